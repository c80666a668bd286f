// Pulumi provider "random" for the end-to-end toolchain (scripts/e2e-toolchain):
// the Terraform random provider bridged with pulumi-terraform-bridge, with the
// token mapping of pulumi-random (random_password -> random:index/randomPassword:RandomPassword).
// pulumi-random's own provider module is not served by the reachable module proxy.
package main

import (
	"context"

	pf "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge/tokens"
	"github.com/terraform-providers/terraform-provider-random/shim"
)

var version = "0.0.0-dev"

func main() {
	info := tfbridge.ProviderInfo{
		P:                           pf.ShimProvider(shim.NewProvider()),
		Name:                        "random",
		Version:                     version,
		MetadataInfo:                tfbridge.NewProviderMetadata([]byte("{}")),
		EnableAccurateBridgePreview: true,
	}
	info.MustComputeTokens(tokens.SingleModule("random_", "index", func(module, name string) (string, error) {
		return tokens.MakeStandard("random")(module, "Random"+name)
	}))
	schema := []byte(`{"name":"random","version":"` + version + `"}`)
	pf.Main(context.Background(), "random", info, pf.ProviderMetadata{PackageSchema: schema})
}
