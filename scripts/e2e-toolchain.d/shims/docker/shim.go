// Added by scripts/e2e-toolchain to a copy of the Terraform docker provider
// (kreuzwerker): exposes its internal SDKv2 provider constructor to the bridge.
package shim

import (
	"github.com/hashicorp/terraform-plugin-sdk/v2/helper/schema"

	p "github.com/terraform-providers/terraform-provider-docker/internal/provider"
)

func NewProvider(version string) *schema.Provider { return p.New(version)() }
