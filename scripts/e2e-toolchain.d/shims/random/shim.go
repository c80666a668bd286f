// Added by scripts/e2e-toolchain to a copy of the Terraform random provider:
// exposes its internal provider constructor to the bridge.
package shim

import (
	"github.com/hashicorp/terraform-plugin-framework/provider"

	p "github.com/terraform-providers/terraform-provider-random/internal/provider"
)

func NewProvider() provider.Provider { return p.New() }
