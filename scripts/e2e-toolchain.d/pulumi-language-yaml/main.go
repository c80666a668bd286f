// The Pulumi YAML language host for the end-to-end toolchain
// (scripts/e2e-toolchain): pulumi-yaml v1.25.0's language server
// (github.com/pulumi/pulumi-yaml/pkg/server), started as its
// cmd/pulumi-language-yaml/main.go does, plus:
//   - Link, which v1.25.0 lacks and `pulumi package add` calls: an empty
//     answer, as pulumi-yaml's own Link since v1.26.2 (pkg/server/server.go,
//     commit b8a5bd6b "Implement pulumirpc.Link for yamlLanguageHost"): a YAML
//     program needs no SDK, the CLI records the package in Pulumi.yaml.
//   - a -version flag, as the other hosts of this toolchain have.
//
// v1.26.2 and later are not served by the reachable module proxy.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/pulumi/pulumi-yaml/pkg/server"
	"github.com/pulumi/pulumi-yaml/pkg/version"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/logging"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
)

type host struct {
	pulumirpc.LanguageRuntimeServer
}

func (host) Link(context.Context, *pulumirpc.LinkRequest) (*pulumirpc.LinkResponse, error) {
	return &pulumirpc.LinkResponse{}, nil
}

func main() {
	var tracing, root, compiler string
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.StringVar(&tracing, "tracing", "", "Emit tracing to a Zipkin-compatible tracing endpoint")
	flag.StringVar(&root, "root", "", "Root of the program execution")
	flag.StringVar(&compiler, "compiler", "", "[obsolete] Compiler to use to pre-process YAML")
	flag.Parse()
	if *showVersion {
		fmt.Println(version.Version)
		return
	}
	logging.InitLogging(false, 0, false)
	cmdutil.InitTracing("pulumi-language-yaml", "pulumi-language-yaml", tracing)

	var cancelChannel chan bool
	var engineAddress string
	if args := flag.Args(); len(args) > 0 {
		engineAddress = args[0]
		ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
		cancelChannel = make(chan bool)
		go func() {
			<-ctx.Done()
			cancel()
			close(cancelChannel)
		}()
		if err := rpcutil.Healthcheck(ctx, engineAddress, 5*time.Minute, cancel); err != nil {
			cmdutil.Exit(fmt.Errorf("could not start health check host RPC server: %w", err))
		}
	}

	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: cancelChannel,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv,
				host{server.NewLanguageHost(engineAddress, tracing, false /* useRPCLoader */)})
			return nil
		},
	})
	if err != nil {
		cmdutil.Exit(fmt.Errorf("could not start language host RPC server: %w", err))
	}
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		cmdutil.Exit(fmt.Errorf("language host RPC stopped serving: %w", err))
	}
}
