// Pulumi provider "tls" for the end-to-end toolchain (scripts/e2e-toolchain):
// the Terraform tls provider bridged with pulumi-terraform-bridge, with the
// token mapping of pulumi-tls (tls_private_key -> tls:index/privateKey:PrivateKey).
// pulumi-tls's own provider module is not served by the reachable module proxy.
package main

import (
	"context"

	"github.com/hashicorp/terraform-provider-tls/shim"
	pf "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge/tokens"
)

var version = "0.0.0-dev"

func main() {
	info := tfbridge.ProviderInfo{
		P:                              pf.ShimProvider(shim.NewProvider()),
		Name:                           "tls",
		Version:                        version,
		MetadataInfo:                   tfbridge.NewProviderMetadata([]byte("{}")),
		EnableZeroDefaultSchemaVersion: true,
		EnableAccurateBridgePreview:    true,
	}
	info.MustComputeTokens(tokens.SingleModule("tls_", "index", tokens.MakeStandard("tls")))
	schema := []byte(`{"name":"tls","version":"` + version + `"}`)
	pf.Main(context.Background(), "tls", info, pf.ProviderMetadata{PackageSchema: schema})
}
