// A minimal Pulumi language host for Node.js/TypeScript programs, used only by
// the end-to-end toolchain (scripts/e2e-toolchain). The upstream host module
// (github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3) is not
// served by the module proxy this project can reach, so this small host is
// built instead on the published sdk/v3 and pkg/v3 modules. It follows
// upstream's sdk/nodejs/cmd/pulumi-language-nodejs/main.go (pulumi v3.260
// tree): a program runs as `node <nodeargs> <@pulumi/pulumi/cmd/run> --monitor
// ... <entry point>`, with the run script resolved from the program's
// node_modules, so the program's own @pulumi/pulumi (from npm) does the work.
//
// Supported: Handshake, Run, InstallDependencies (npm/yarn/pnpm/bun through
// sdk/v3/nodejs/npm), GetRequiredPackages (packages whose package.json says
// "pulumi": {"resource": true}), GeneratePackage and Link (pkg/v3
// codegen/nodejs; what `pulumi package add` uses), GetPluginInfo, About,
// GetProgramDependencies, RuntimeOptionsPrompts, Cancel.
// Left out: RunPlugin (Node.js plugins), Pack, GenerateProgram/Project,
// debugging, the bun runtime, and upstream's proxy of the resource monitor with
// its synchronous-invoke pipes (--sync is optional for the run script:
// sdk/nodejs/runtime/settings.ts uses it only when given).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/blang/semver"
	"github.com/google/shlex"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/pulumi/pulumi/pkg/v3/codegen/cgstrings"
	codegen "github.com/pulumi/pulumi/pkg/v3/codegen/nodejs"
	"github.com/pulumi/pulumi/pkg/v3/codegen/schema"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/config"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/fsutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
	"github.com/pulumi/pulumi/sdk/v3/nodejs/npm"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

var version = "0.0.0-dev"

const (
	runModule = "@pulumi/pulumi/cmd/run"
	// Exit code the run script uses after it has shown the user a message.
	userActionableExit = 32
)

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer
	engineAddress string
	tracing       string
	cancelCtx     context.Context
	cancel        context.CancelFunc
}

func main() {
	tracing := flag.String("tracing", "", "tracing endpoint")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(version)
		return
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
	h := &host{engineAddress: engineAddress, tracing: *tracing, cancelCtx: runCtx, cancel: runCancel}
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

type nodeOptions struct {
	typescript     bool // default true: the run script registers ts-node
	tsconfig       string
	nodeargs       string
	packagemanager npm.PackageManagerType
	production     bool
}

// The runtime options of upstream's parseOptions, for the node runtime.
func options(info *pulumirpc.ProgramInfo) (nodeOptions, error) {
	o := nodeOptions{typescript: true, packagemanager: npm.AutoPackageManager}
	m := map[string]any{}
	if info.GetOptions() != nil {
		m = info.GetOptions().AsMap()
	}
	for k, v := range m {
		var ok bool
		switch k {
		case "typescript":
			o.typescript, ok = v.(bool)
		case "production":
			o.production, ok = v.(bool)
		case "tsconfig":
			o.tsconfig, ok = v.(string)
		case "nodeargs":
			o.nodeargs, ok = v.(string)
		case "packagemanager":
			var s string
			if s, ok = v.(string); ok {
				switch s {
				case "auto", "npm", "yarn", "pnpm", "bun":
					o.packagemanager = npm.PackageManagerType(s)
				default:
					return o, fmt.Errorf("packagemanager option must be one of auto, npm, yarn, pnpm or bun, got %q", s)
				}
			}
		default:
			ok = true // unknown options are ignored, as upstream does
		}
		if !ok {
			return o, fmt.Errorf("runtime option %s has the wrong type: %v", k, v)
		}
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

// GetRequiredPackages lists the packages under node_modules whose package.json
// has "pulumi": {"resource": true}, as upstream's getPackagesFromDir and
// getPackageInfo do (name from pulumi.name or an @pulumi/<name> package name,
// version from pulumi.version or the package's version, with a "v").
func (h *host) GetRequiredPackages(ctx context.Context, req *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	seen := map[string]bool{}
	var pkgs []*pulumirpc.PackageDependency
	var walk func(dir string, inNodeModules bool)
	walk = func(dir string, inNodeModules bool) {
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			dir = real
		}
		if seen[dir] {
			return
		}
		seen[dir] = true
		entries, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			if fi, err := os.Stat(p); err == nil && fi.IsDir() {
				// Policy packs' dependencies are not the program's (as upstream).
				if pp, _ := workspace.DetectPolicyPackPathAt(p); pp != "" {
					continue
				}
				walk(p, inNodeModules || filepath.Base(dir) == "node_modules")
			} else if inNodeModules && e.Name() == "package.json" {
				if d := packageFromJSON(p); d != nil {
					pkgs = append(pkgs, d)
				}
			}
		}
	}
	walk(req.GetInfo().GetProgramDirectory(), false)
	return &pulumirpc.GetRequiredPackagesResponse{Packages: pkgs}, nil
}

func packageFromJSON(path string) *pulumirpc.PackageDependency {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var info struct {
		Name    string                  `json:"name"`
		Version string                  `json:"version"`
		Pulumi  plugin.PulumiPluginJSON `json:"pulumi"`
	}
	if json.Unmarshal(b, &info) != nil || !info.Pulumi.Resource {
		return nil
	}
	name := info.Pulumi.Name
	if name == "" {
		if !strings.HasPrefix(info.Name, "@pulumi/") {
			return nil
		}
		name = strings.TrimPrefix(info.Name, "@pulumi/")
	}
	v := info.Pulumi.Version
	if v == "" {
		v = info.Version
	}
	if v == "" {
		return nil
	}
	if !strings.HasPrefix(v, "v") {
		v = "v" + v
	}
	d := &pulumirpc.PackageDependency{Name: name, Kind: "resource", Version: v, Server: info.Pulumi.Server}
	if p := info.Pulumi.Parameterization; p != nil {
		d.Parameterization = &pulumirpc.PackageParameterization{Name: p.Name, Version: p.Version, Value: p.Value}
	}
	return d
}

func (h *host) GetRequiredPlugins(context.Context, *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

// Path of a module as the program's node would resolve it (upstream's locateModule).
func locateModule(ctx context.Context, mod, dir, nodeBin string) (string, error) {
	script := fmt.Sprintf(`try { console.log(require.resolve('%s')); } catch (error) { `+
		`if (error.code === 'MODULE_NOT_FOUND') { console.error("It looks like the Pulumi SDK has not been `+
		`installed. Have you run pulumi install?") } else { console.error(error.message); } process.exit(1); }`, mod)
	cmd := exec.CommandContext(ctx, nodeBin, "-e", script)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", errors.New(string(ee.Stderr))
		}
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	if h.engineAddress == "" {
		return nil, errors.New("Handshake must be called before Run")
	}
	if req.GetAttachDebugger() {
		return &pulumirpc.RunResponse{Error: "the e2e language host does not support debugging"}, nil
	}
	o, err := options(req.GetInfo())
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		return &pulumirpc.RunResponse{Error: "could not find node on the $PATH: " + err.Error()}, nil
	}
	runPath, err := locateModule(ctx, runModule, req.GetInfo().GetProgramDirectory(), nodeBin)
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}

	args, err := shlex.Split(o.nodeargs)
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	// Arguments as upstream's constructArguments.
	args = append(args, runPath)
	add := func(k, v string) {
		if v != "" {
			args = append(args, "--"+k, v)
		}
	}
	add("monitor", req.GetMonitorAddress())
	add("engine", h.engineAddress)
	add("organization", req.GetOrganization())
	add("project", req.GetProject())
	add("root-directory", req.GetInfo().GetRootDirectory())
	add("stack", req.GetStack())
	add("pwd", req.GetInfo().GetProgramDirectory())
	if req.GetDryRun() {
		args = append(args, "--dry-run")
	}
	add("parallel", strconv.Itoa(int(req.GetParallel())))
	add("tracing", h.tracing)
	args = append(args, req.GetInfo().GetEntryPoint())
	args = append(args, req.GetArgs()...)

	// Config keys as <namespace>:config:<name>, as upstream's constructConfig.
	cfg := map[string]string{}
	for k, v := range req.GetConfig() {
		pk, err := config.ParseKey(k)
		if err != nil {
			return &pulumirpc.RunResponse{Error: err.Error()}, nil
		}
		cfg[pk.Namespace()+":config:"+pk.Name()] = v
	}
	cfgJSON, err := json.Marshal(cfg)
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
	env := append(os.Environ(), "PULUMI_CONFIG="+string(cfgJSON), "PULUMI_CONFIG_SECRET_KEYS="+string(secretJSON))
	if o.typescript {
		env = append(env, "PULUMI_NODEJS_TYPESCRIPT=true")
	}
	if o.tsconfig != "" {
		env = append(env, "PULUMI_NODEJS_TSCONFIG_PATH="+o.tsconfig)
	}

	runCtx, runCancel := context.WithCancel(h.cancelCtx)
	defer runCancel()
	context.AfterFunc(ctx, runCancel)
	cmd := exec.CommandContext(runCtx, nodeBin, args...)
	cmd.Cancel = func() error {
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			return cmd.Process.Kill()
		}
		return nil
	}
	cmd.WaitDelay = 5 * time.Second
	// Node may set its stdio non-blocking; a wrapper makes exec copy through a
	// pipe instead of handing it our files (upstream's execRuntime does the same).
	cmd.Stdout = struct{ io.Writer }{os.Stdout}
	cmd.Stderr = struct{ io.Writer }{os.Stderr}
	cmd.Env = env
	if err := cmd.Run(); err != nil {
		_ = os.Stdout.Sync()
		_ = os.Stderr.Sync()
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			switch code := exitErr.ExitCode(); code {
			case userActionableExit:
				return &pulumirpc.RunResponse{Bail: true}, nil
			case 0:
				err = fmt.Errorf("program exited unexpectedly: %w", exitErr)
			default:
				if st, ok := exitErr.Sys().(syscall.WaitStatus); ok && st.Signaled() {
					err = fmt.Errorf("program exited on signal %v", st.Signal())
				} else {
					err = fmt.Errorf("program exited with non-zero exit code: %d", code)
				}
			}
		} else {
			err = fmt.Errorf("problem executing program (could not run node): %w", err)
		}
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}

// InstallDependencies: the package manager's install in the workspace root (or
// the program directory), as upstream's InstallDependencies/installShared.
func (h *host) InstallDependencies(req *pulumirpc.InstallDependenciesRequest,
	server pulumirpc.LanguageRuntime_InstallDependenciesServer,
) error {
	o, err := options(req.GetInfo())
	if err != nil {
		return err
	}
	closer, stdout, stderr, err := rpcutil.MakeInstallDependenciesStreams(server, req.GetIsTerminal())
	if err != nil {
		return err
	}
	defer closer.Close()
	root := req.GetInfo().GetProgramDirectory()
	if ws, err := npm.FindWorkspaceRoot(root); err == nil {
		fmt.Fprintf(stdout, "Detected workspace root at %s\n", ws)
		root = ws
	} else if !errors.Is(err, npm.ErrNotInWorkspace) {
		return fmt.Errorf("failure while trying to find workspace root: %w", err)
	}
	fmt.Fprintf(stdout, "Installing dependencies...\n\n")
	if _, err := npm.Install(server.Context(), o.packagemanager, root, o.production, stdout, stderr); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Finished installing dependencies\n\n")
	return closer.Close()
}

// GeneratePackage writes a Node.js SDK for a schema, as upstream's GeneratePackage.
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
	files, err := codegen.GeneratePackage("pulumi-language-nodejs", pkg, req.GetExtraFiles(),
		req.GetLocalDependencies(), req.GetLocal(), schema.NewCachedLoader(loader))
	if err != nil {
		return nil, err
	}
	for name, data := range files {
		out := filepath.Join(req.GetDirectory(), name)
		if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(out, data, 0o600); err != nil {
			return nil, err
		}
	}
	return &pulumirpc.GeneratePackageResponse{Diagnostics: rpcDiags}, nil
}

// Link adds generated SDKs to the program's package.json (`file:` dependencies
// through the package manager's Link) and returns import instructions, as
// upstream's Link.
func (h *host) Link(ctx context.Context, req *pulumirpc.LinkRequest) (*pulumirpc.LinkResponse, error) {
	o, err := options(req.GetInfo())
	if err != nil {
		return nil, err
	}
	loader, err := schema.NewLoaderClient(req.GetLoaderTarget())
	if err != nil {
		return nil, err
	}
	defer loader.Close()
	cached := schema.NewCachedLoader(loader)
	dir := req.GetInfo().GetProgramDirectory()
	pm, err := npm.ResolvePackageManager(o.packagemanager, dir)
	if err != nil {
		return nil, err
	}
	isTS := o.typescript || o.tsconfig != ""
	if !isTS {
		if _, err := fsutil.Searchup(dir, "tsconfig.json"); err == nil {
			isTS = true
		}
	}
	var b strings.Builder
	if isTS {
		b.WriteString("You can import the SDK in your TypeScript code with:\n\n")
	} else {
		b.WriteString("You can import the SDK in your JavaScript code with:\n\n")
	}
	for _, dep := range req.GetPackages() {
		p := dep.GetPackage()
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
		if err := def.ImportLanguages(map[string]schema.Language{"nodejs": codegen.Importer}); err != nil {
			return nil, err
		}
		name := "@pulumi/" + def.Name
		if def.Namespace != "" {
			name = "@" + def.Namespace + "/" + def.Name
		}
		if info, ok := def.Language["nodejs"].(codegen.NodePackageInfo); ok && info.PackageName != "" {
			name = info.PackageName
		}
		if err := pm.Link(ctx, dir, name, dep.GetPath()); err != nil {
			return nil, err
		}
		if isTS {
			fmt.Fprintf(&b, "  import * as %s from \"%s\";\n", cgstrings.Camel(ref.Name()), name)
		} else {
			fmt.Fprintf(&b, "  const %s = require(\"%s\");\n", cgstrings.Camel(ref.Name()), name)
		}
	}
	return &pulumirpc.LinkResponse{ImportInstructions: b.String()}, nil
}

func (h *host) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("could not find node: %w", err)
	}
	out, err := exec.CommandContext(ctx, nodeBin, "--version").Output()
	if err != nil {
		return nil, err
	}
	return &pulumirpc.AboutResponse{Executable: nodeBin, Version: strings.TrimSpace(string(out))}, nil
}

func (h *host) GetProgramDependencies(ctx context.Context, req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	o, err := options(req.GetInfo())
	if err != nil {
		return nil, err
	}
	pm, err := npm.ResolvePackageManager(o.packagemanager, req.GetInfo().GetProgramDirectory())
	if err != nil {
		return nil, err
	}
	deps, err := pm.ListPackages(ctx, req.GetInfo().GetProgramDirectory(), req.GetTransitiveDependencies())
	if err != nil {
		return nil, fmt.Errorf("failed to get node dependencies: %w", err)
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
