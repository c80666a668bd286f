// A minimal Pulumi language host for Python programs, used only by the
// end-to-end toolchain (scripts/e2e-toolchain). The upstream host module
// (github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3) is not
// served by the module proxy this project can reach, so this small host is
// built instead on the published sdk/v3 and pkg/v3 modules (at the CLI's
// version, as the Node.js host): it resolves the virtualenv with the SDK's own
// python/toolchain package and runs the Python SDK's
// pulumi-language-python-exec script (of the SDK version in requirements.txt),
// which is copied next to this binary.
//
// Supported: Handshake, Run, RunPlugin (source-based plugins such as a
// component_provider_host; not policy packs), InstallDependencies,
// GetRequiredPackages (empty: providers are then loaded on demand from PATH),
// GeneratePackage and Link (pkg/v3 codegen/python; what `pulumi package add`
// into a Python program uses), GetPluginInfo, About, GetProgramDependencies,
// RuntimeOptionsPrompts, Cancel.
// Not supported: Pack, GenerateProgram/Project, debugging, typecheckers.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/blang/semver"

	codegen "github.com/pulumi/pulumi/pkg/v3/codegen/python"
	"github.com/pulumi/pulumi/pkg/v3/codegen/schema"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"github.com/pulumi/pulumi/sdk/v3/python/toolchain"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

var version = "0.0.0-dev"

// Exit code the exec script uses after it has shown the user a message.
const userActionableExit = 32

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer
	exec          string
	engineAddress string
	tracing       string
	cancelCtx     context.Context
	cancel        context.CancelFunc
}

func main() {
	tracing := flag.String("tracing", "", "tracing endpoint")
	showVersion := flag.Bool("version", false, "print the version and exit")
	givenExec := flag.String("use-executor", "", "use this program as the executor")
	flag.Parse()
	if *showVersion {
		fmt.Println(version)
		return
	}

	execPath := *givenExec
	if execPath == "" {
		self, err := os.Executable()
		if err != nil {
			cmdutil.Exit(err)
		}
		execPath = filepath.Join(filepath.Dir(self), "pulumi-language-python-exec")
		if _, err := os.Stat(execPath); err != nil {
			cmdutil.Exit(fmt.Errorf("missing executor %s: %w", execPath, err))
		}
	}

	var engineAddress string
	if args := flag.Args(); len(args) > 0 {
		engineAddress = args[0]
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	cancelChannel := make(chan bool)
	go func() {
		<-ctx.Done()
		stop()
		close(cancelChannel)
	}()
	if engineAddress != "" {
		if err := rpcutil.Healthcheck(ctx, engineAddress, 5*time.Minute, stop); err != nil {
			cmdutil.Exit(fmt.Errorf("could not start health check: %w", err))
		}
	}

	runCtx, runCancel := context.WithCancel(context.Background())
	h := &host{exec: execPath, engineAddress: engineAddress, tracing: *tracing,
		cancelCtx: runCtx, cancel: runCancel}
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: cancelChannel,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, h)
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

func options(info *pulumirpc.ProgramInfo, isPlugin bool) (toolchain.PythonOptions, error) {
	o := toolchain.PythonOptions{Root: info.GetRootDirectory(), ProgramDir: info.GetProgramDirectory()}
	m := map[string]any{}
	if info.GetOptions() != nil {
		m = info.GetOptions().AsMap()
	}
	if v, ok := m["virtualenv"]; ok {
		s, ok := v.(string)
		if !ok {
			return o, errors.New("virtualenv option must be a string")
		}
		o.Virtualenv = s
	}
	if v, ok := m["toolchain"]; ok {
		switch v {
		case "pip":
			o.Toolchain = toolchain.Pip
		case "poetry":
			o.Toolchain = toolchain.Poetry
		case "uv":
			o.Toolchain = toolchain.Uv
		default:
			return o, fmt.Errorf("unsupported toolchain option: %v", v)
		}
	}
	if v, ok := m["typechecker"]; ok && v != nil && v != "" {
		return o, fmt.Errorf("the e2e language host does not run typecheckers (typechecker: %v)", v)
	}
	if isPlugin && o.Virtualenv == "" && (o.Toolchain == toolchain.Pip || o.Toolchain == toolchain.Auto) {
		o.Virtualenv = "venv"
	}
	return o, nil
}

func (h *host) Handshake(ctx context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	h.engineAddress = req.GetEngineAddress()
	hctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	if err := rpcutil.Healthcheck(hctx, h.engineAddress, 5*time.Minute, stop); err != nil {
		return nil, fmt.Errorf("could not start health check: %w", err)
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

func (h *host) GetRequiredPackages(ctx context.Context, req *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	o, err := options(req.GetInfo(), false)
	if err != nil {
		return nil, err
	}
	tc, err := toolchain.ResolveToolchain(o)
	if err != nil {
		return nil, err
	}
	if err := tc.EnsureVenv(ctx, o.ProgramDir, false, true, os.Stderr, os.Stderr); err != nil {
		return nil, err
	}
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

func (h *host) GetRequiredPlugins(context.Context, *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	if h.engineAddress == "" {
		return nil, errors.New("Handshake must be called before Run")
	}
	o, err := options(req.GetInfo(), false)
	if err != nil {
		return nil, err
	}
	if req.GetAttachDebugger() {
		return &pulumirpc.RunResponse{Error: "the e2e language host does not support debugging"}, nil
	}

	args := []string{h.exec}
	add := func(k, v string) {
		if v != "" {
			args = append(args, "--"+k, v)
		}
	}
	add("monitor", req.GetMonitorAddress())
	add("engine", h.engineAddress)
	add("project", req.GetProject())
	add("root_directory", req.GetInfo().GetRootDirectory())
	add("stack", req.GetStack())
	add("pwd", req.GetPwd())
	add("dry_run", strconv.FormatBool(req.GetDryRun()))
	add("parallel", strconv.Itoa(int(req.GetParallel())))
	add("tracing", h.tracing)
	add("organization", req.GetOrganization())
	args = append(args, req.GetInfo().GetEntryPoint())
	args = append(args, req.GetArgs()...)

	config, err := json.Marshal(req.GetConfig())
	if err != nil {
		return nil, err
	}
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	secretJSON, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, err
	}

	tc, err := toolchain.ResolveToolchain(o)
	if err != nil {
		return nil, err
	}
	if err := tc.ValidateVenv(ctx); err != nil {
		return nil, err
	}
	runCtx, runCancel := context.WithCancel(h.cancelCtx)
	defer runCancel()
	context.AfterFunc(ctx, runCancel)
	cmd, err := tc.Command(runCtx, args...)
	if err != nil {
		return nil, err
	}
	cmd.Cancel = func() error {
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			return cmd.Process.Kill()
		}
		return nil
	}
	cmd.WaitDelay = 5 * time.Second
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	if req.GetConfig() != nil {
		env = append(env, "PULUMI_CONFIG="+string(config))
	}
	env = append(env, "PULUMI_CONFIG_SECRET_KEYS="+string(secretJSON))
	cmd.Env = env

	if err := cmd.Run(); err != nil {
		_ = os.Stdout.Sync()
		_ = os.Stderr.Sync()
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			if st, ok := exitErr.Sys().(syscall.WaitStatus); ok {
				switch st.ExitStatus() {
				case userActionableExit:
					return &pulumirpc.RunResponse{Bail: true}, nil
				case 0:
					err = fmt.Errorf("program exited unexpectedly: %w", exitErr)
				default:
					err = fmt.Errorf("program exited with non-zero exit code: %d", st.ExitStatus())
				}
			} else {
				err = fmt.Errorf("program exited unexpectedly: %w", exitErr)
			}
		} else {
			err = fmt.Errorf("problem executing program (could not run language executor): %w", err)
		}
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}

func (h *host) InstallDependencies(req *pulumirpc.InstallDependenciesRequest,
	server pulumirpc.LanguageRuntime_InstallDependenciesServer,
) error {
	o, err := options(req.GetInfo(), req.GetIsPlugin())
	if err != nil {
		return err
	}
	closer, stdout, stderr, err := rpcutil.MakeInstallDependenciesStreams(server, req.GetIsTerminal())
	if err != nil {
		return err
	}
	defer closer.Close()
	tc, err := toolchain.ResolveToolchain(o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Installing dependencies...\n\n")
	if err := tc.InstallDependencies(server.Context(), o.ProgramDir, req.GetUseLanguageVersionTools(),
		true, stdout, stderr); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Finished installing dependencies\n\n")
	return closer.Close()
}

func (h *host) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	o := toolchain.PythonOptions{Toolchain: toolchain.Pip}
	if req.GetInfo() != nil {
		var err error
		if o, err = options(req.GetInfo(), false); err != nil {
			return nil, err
		}
	}
	tc, err := toolchain.ResolveToolchain(o)
	if err != nil {
		return nil, err
	}
	info, err := tc.About(ctx)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.AboutResponse{
		Executable: info.PythonExecutable,
		Version:    info.PythonVersion.String(),
		Metadata:   map[string]string{"toolchain": toolchain.Name(o.Toolchain)},
	}, nil
}

func (h *host) GetProgramDependencies(ctx context.Context, req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	o, err := options(req.GetInfo(), false)
	if err != nil {
		return nil, err
	}
	tc, err := toolchain.ResolveToolchain(o)
	if err != nil {
		return nil, err
	}
	deps, err := tc.ListPackages(ctx, req.GetTransitiveDependencies())
	if err != nil {
		return nil, fmt.Errorf("failed to get python dependencies: %w", err)
	}
	out := make([]*pulumirpc.DependencyInfo, len(deps))
	for i, d := range deps {
		out[i] = &pulumirpc.DependencyInfo{Name: d.Name, Version: d.Version}
	}
	return &pulumirpc.GetProgramDependenciesResponse{Dependencies: out}, nil
}

func (h *host) RuntimeOptionsPrompts(context.Context, *pulumirpc.RuntimeOptionsRequest,
) (*pulumirpc.RuntimeOptionsResponse, error) {
	return &pulumirpc.RuntimeOptionsResponse{}, nil
}

func (h *host) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	h.cancel()
	return &emptypb.Empty{}, nil
}

// RunPlugin runs a source-based plugin (PulumiPlugin.yaml, runtime: python) as
// `python <plugin dir> <args...>` in the plugin's virtualenv, so its
// __main__.py runs, and streams its stdout (where a provider prints its port)
// and stderr back; a non-zero exit is sent as Exitcode. As upstream's
// RunPlugin in sdk/python/cmd/pulumi-language-python/main.go (pulumi v3.260
// tree): options as for a plugin (virtualenv defaults to "venv" with pip),
// cmd.Dir = req.Pwd, req.Env appended to the virtualenv's environment (the CLI
// sends its whole environment: sdk/go/common/resource/plugin/plugin.go).
// Upstream's other modes are left out: analyzers (policy packs) and plugins
// without __main__.py (`python -m pulumi.run.plugin <pyproject name>`).
func (h *host) RunPlugin(req *pulumirpc.RunPluginRequest, server pulumirpc.LanguageRuntime_RunPluginServer) error {
	if req.GetKind() == string(apitype.AnalyzerPlugin) {
		return errors.New("the e2e language host does not run policy packs")
	}
	if req.GetAttachDebugger() {
		return errors.New("the e2e language host does not support debugging")
	}
	ctx := server.Context()
	o, err := options(req.GetInfo(), true)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(o.Root, "__main__.py")); err != nil {
		return fmt.Errorf("the e2e language host runs only plugins with a __main__.py: %w", err)
	}
	tc, err := toolchain.ResolveToolchain(o)
	if err != nil {
		return err
	}
	if err := tc.ValidateVenv(ctx); err != nil {
		return err
	}
	args := append([]string{req.GetInfo().GetProgramDirectory()}, req.GetArgs()...)
	cmd, err := tc.Command(ctx, args...)
	if err != nil {
		return err
	}
	closer, stdout, stderr, err := rpcutil.MakeRunPluginStreams(server, false)
	if err != nil {
		return err
	}
	defer closer.Close()
	cmd.Dir = req.GetPwd()
	cmd.Env = append(cmd.Env, req.GetEnv()...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			if st, ok := exitErr.Sys().(syscall.WaitStatus); ok {
				return server.Send(&pulumirpc.RunPluginResponse{
					Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: int32(st.ExitStatus())},
				})
			}
			return fmt.Errorf("plugin exited unexpectedly: %w", exitErr)
		}
		return fmt.Errorf("problem executing plugin program: %w", err)
	}
	return closer.Close()
}

// GeneratePackage writes a Python SDK for a schema, as upstream's
// GeneratePackage in sdk/python/cmd/pulumi-language-python/main.go: bind the
// schema (dangling references allowed) with the engine's schema loader, then
// pkg/v3 codegen/python's GeneratePackage, files written under req.Directory.
func (h *host) GeneratePackage(ctx context.Context, req *pulumirpc.GeneratePackageRequest,
) (*pulumirpc.GeneratePackageResponse, error) {
	loader, err := schema.NewLoaderClient(req.GetLoaderTarget())
	if err != nil {
		return nil, err
	}
	defer loader.Close()
	var spec schema.PackageSpec
	if err := json.Unmarshal([]byte(req.GetSchema()), &spec); err != nil {
		return nil, err
	}
	pkg, diags, err := schema.BindSpec(spec, schema.NewCachedLoader(loader), schema.ValidationOptions{
		AllowDanglingReferences: true,
	})
	if err != nil {
		return nil, err
	}
	rpcDiags := plugin.HclDiagnosticsToRPCDiagnostics(diags)
	if diags.HasErrors() {
		return &pulumirpc.GeneratePackageResponse{Diagnostics: rpcDiags}, nil
	}
	files, err := codegen.GeneratePackage("pulumi-language-python", pkg, req.GetExtraFiles(),
		schema.NewCachedLoader(loader))
	if err != nil {
		return nil, err
	}
	for name, data := range files {
		out := filepath.Join(req.GetDirectory(), name)
		if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
			return nil, fmt.Errorf("could not create output directory %s: %w", filepath.Dir(name), err)
		}
		if err := os.WriteFile(out, data, 0o600); err != nil {
			return nil, fmt.Errorf("could not write output file %s: %w", name, err)
		}
	}
	return &pulumirpc.GeneratePackageResponse{Diagnostics: rpcDiags}, nil
}

// Link adds generated SDKs to the program and returns import instructions, as
// upstream's Link in sdk/python/cmd/pulumi-language-python/main.go: the Python
// package name is the schema's language.python.packageName or
// pulumi_<name> (codegen/python PyPack), and the toolchain's LinkPackages
// records it (pip: the SDK's path as a line of requirements.txt, replacing any
// line of the same package; poetry/uv: their pyproject.toml). Nothing is
// installed here: `pulumi package add` then calls InstallDependencies, which
// for pip runs `pip install -r requirements.txt` in the virtualenv
// (sdk/v3/python/toolchain/pip.go), building the SDK from its folder.
func (h *host) Link(ctx context.Context, req *pulumirpc.LinkRequest) (*pulumirpc.LinkResponse, error) {
	o, err := options(req.GetInfo(), false)
	if err != nil {
		return nil, err
	}
	loader, err := schema.NewLoaderClient(req.GetLoaderTarget())
	if err != nil {
		return nil, err
	}
	defer loader.Close()
	cached := schema.NewCachedLoader(loader)

	instructions := "You can import the SDK in your Python code with:\n\n"
	if len(req.GetPackages()) > 1 {
		instructions = "You can import the SDKs in your Python code with:\n\n"
	}
	packages := map[string]string{} // Python package name -> path
	var imports strings.Builder
	for _, dep := range req.GetPackages() {
		p := dep.GetPackage()
		if p.GetName() == "pulumi" {
			packages["pulumi"] = dep.GetPath()
			continue
		}
		desc := &schema.PackageDescriptor{Name: p.GetName(), DownloadURL: p.GetServer()}
		if v, err := semver.New(p.GetVersion()); err == nil {
			desc.Version = v
		}
		if pp := p.GetParameterization(); pp != nil {
			desc.Parameterization = &schema.ParameterizationDescriptor{Name: pp.GetName(), Value: pp.GetValue()}
			if v, err := semver.New(pp.GetVersion()); err == nil {
				desc.Parameterization.Version = *v
			}
		}
		ref, err := schema.LoadPackageReferenceV2(ctx, cached, desc)
		if err != nil {
			return nil, err
		}
		def, err := ref.Definition()
		if err != nil {
			return nil, err
		}
		if err := def.ImportLanguages(map[string]schema.Language{"python": codegen.Importer}); err != nil {
			return nil, err
		}
		var importName, packageName string
		if info, ok := def.Language["python"].(codegen.PackageInfo); ok && info.PackageName != "" {
			importName, packageName = info.PackageName, info.PackageName
		}
		if importName == "" {
			importName = strings.ReplaceAll(ref.Name(), "-", "_")
		}
		if packageName == "" {
			packageName = codegen.PyPack(ref.Namespace(), ref.Name())
		}
		packages[packageName] = dep.GetPath()
		fmt.Fprintf(&imports, "  import %s as %s\n", packageName, importName)
	}
	instructions += imports.String()

	dir := req.GetInfo().GetProgramDirectory()
	if o.Toolchain != toolchain.Pip {
		// As upstream: without pyproject.toml (no `pulumi install` yet), link
		// into requirements.txt, which poetry and uv later convert.
		if _, err := os.Stat(filepath.Join(dir, "pyproject.toml")); os.IsNotExist(err) {
			if _, err := os.Stat(filepath.Join(dir, "requirements.txt")); os.IsNotExist(err) {
				return nil, fmt.Errorf("no pyproject.toml or requirements.txt found in %s", dir)
			}
			o.Toolchain = toolchain.Pip
		}
	}
	tc, err := toolchain.ResolveToolchain(o)
	if err != nil {
		return nil, err
	}
	if err := tc.LinkPackages(ctx, packages); err != nil {
		return nil, fmt.Errorf("linking packages: %w", err)
	}
	return &pulumirpc.LinkResponse{ImportInstructions: instructions}, nil
}
