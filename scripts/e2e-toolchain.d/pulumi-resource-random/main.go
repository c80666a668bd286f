// Pulumi provider "random" for the end-to-end toolchain (scripts/e2e-toolchain):
// the Terraform random provider bridged with pulumi-terraform-bridge, with the
// token mapping of pulumi-random (random_password -> random:index/randomPassword:RandomPassword).
// pulumi-random's own provider module is not served by the reachable module proxy.
//
// Its package schema (what GetSchema answers; Pulumi YAML and SDK generation
// need it) is generated at build time: the build runs this binary with
// -emit-schema (the bridge's pf/tfgen.GenerateSchema, which pf/tfgen.Main's
// `schema` command runs too), writes schema.json and builds again with it embedded.
package main

import (
	"context"
	_ "embed"
	"fmt"
	"os"

	pf "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"
	pftfgen "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfgen"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge/tokens"
	"github.com/terraform-providers/terraform-provider-random/shim"
)

var version = "0.0.0-dev"

//go:embed schema.json
var schema []byte

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
	if len(os.Args) == 2 && os.Args[1] == "-emit-schema" {
		res, err := pftfgen.GenerateSchema(context.Background(), pftfgen.GenerateSchemaOptions{
			ProviderInfo: info, XInMemoryDocs: true,
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Stdout.Write(res.ProviderMetadata.PackageSchema)
		return
	}
	pf.Main(context.Background(), "random", info, pf.ProviderMetadata{PackageSchema: schema})
}
