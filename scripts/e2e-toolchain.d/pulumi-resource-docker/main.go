// Pulumi provider "docker" for the end-to-end toolchain (scripts/e2e-toolchain):
// the Terraform docker provider (kreuzwerker) bridged with
// pulumi-terraform-bridge, with the token and field mapping of pulumi-docker
// (docker_container -> docker:index/container:Container, docker_image ->
// docker:index/remoteImage:RemoteImage, ...). pulumi-docker's own provider
// module is not served by the reachable module proxy, so pulumi-docker's
// native (non-Terraform) resource docker:index/image:Image is NOT available.
package main

import (
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge/tokens"
	shimv2 "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfshim/sdk-v2"
	ptokens "github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"github.com/terraform-providers/terraform-provider-docker/shim"
)

var version = "0.0.0-dev"

func tok(name string) ptokens.Type {
	return ptokens.Type("docker:index/" + lowerFirst(name) + ":" + name)
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return string(s[0]|0x20) + s[1:]
}

func main() {
	info := tfbridge.ProviderInfo{
		P:            shimv2.NewProvider(shim.NewProvider(version)),
		Name:         "docker",
		Version:      version,
		MetadataInfo: tfbridge.NewProviderMetadata([]byte("{}")),
		Config: map[string]*tfbridge.SchemaInfo{
			"registry_auth": {Name: "registryAuth", MaxItemsOne: tfbridge.False()},
		},
		Resources: map[string]*tfbridge.ResourceInfo{
			"docker_config": {Tok: tok("ServiceConfig")},
			"docker_container": {
				Tok:                 tok("Container"),
				DeleteBeforeReplace: true,
				Fields: map[string]*tfbridge.SchemaInfo{
					"command":           {Name: "command"},
					"networks_advanced": {Name: "networksAdvanced"},
				},
			},
			"docker_image": {
				Tok:    tok("RemoteImage"),
				Fields: map[string]*tfbridge.SchemaInfo{"name": {Name: "name"}},
			},
			"docker_network":        {Tok: tok("Network")},
			"docker_secret":         {Tok: tok("Secret")},
			"docker_service":        {Tok: tok("Service")},
			"docker_volume":         {Tok: tok("Volume")},
			"docker_registry_image": {Tok: tok("RegistryImage")},
			"docker_plugin":         {Tok: tok("Plugin")},
			"docker_tag":            {Tok: tok("Tag")},
		},
	}
	info.MustComputeTokens(tokens.SingleModule("docker_", "index", tokens.MakeStandard("docker")))
	schema := []byte(`{"name":"docker","version":"` + version + `"}`)
	tfbridge.Main("docker", version, info, schema)
}
