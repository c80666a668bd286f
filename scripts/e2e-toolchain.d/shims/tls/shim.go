// Added by scripts/e2e-toolchain to a copy of the Terraform tls provider:
// exposes its internal provider constructor to the bridge.
package shim

import (
	"github.com/hashicorp/terraform-plugin-framework/provider"

	p "github.com/hashicorp/terraform-provider-tls/internal/provider"
)

func NewProvider() provider.Provider { return p.New() }
