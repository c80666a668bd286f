// Added by scripts/e2e-toolchain to pulumi's terraform-plugin-sdk/v2 fork:
// the fork version pinned by the served bridge predates terraform-plugin-go
// v0.31, whose tfprotov5.ProviderServer interface gained GenerateResourceConfig
// (used by `terraform query`, never by the Pulumi bridge).
package schema

import (
	"context"

	"github.com/hashicorp/terraform-plugin-go/tfprotov5"
)

func (s *GRPCProviderServer) GenerateResourceConfig(
	_ context.Context, _ *tfprotov5.GenerateResourceConfigRequest,
) (*tfprotov5.GenerateResourceConfigResponse, error) {
	return &tfprotov5.GenerateResourceConfigResponse{
		Diagnostics: []*tfprotov5.Diagnostic{{
			Severity: tfprotov5.DiagnosticSeverityError,
			Summary:  "GenerateResourceConfig is not supported by this provider build",
		}},
	}, nil
}
