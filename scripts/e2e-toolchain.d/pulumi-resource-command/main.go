// A small stand-in for the pulumi-command provider, used only by the
// end-to-end toolchain (scripts/e2e-toolchain). pulumi-command's provider
// module is not served by the module proxy this project can reach, so this
// implements the two resources the project uses, on the published SDK module:
//
//	command:local:Command   create/update/delete run through /bin/sh -c (or
//	                        `interpreter`), with dir, environment, stdin,
//	                        addPreviousOutputInEnv; outputs stdout and stderr.
//	command:remote:Command  the same over SSH (connection.host/port/user/
//	                        password/privateKey/privateKeyPassword/
//	                        agentSocketPath/dialErrorLimit/perDialTimeout).
//
// Diff: a change of `triggers` replaces the resource; any other input change
// is an update that runs `update` (or `create` when `update` is unset).
// Not implemented: logging options, assetPaths/archivePaths, proxy
// connections, CopyToRemote, the local.run/remote invokes.
package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

var version = "0.0.0-dev"

const (
	localCommand  = "command:local:Command"
	remoteCommand = "command:remote:Command"
)

var opts = plugin.MarshalOptions{KeepUnknowns: true, KeepSecrets: true, KeepResources: true}

type commandProvider struct {
	pulumirpc.UnimplementedResourceProviderServer
	host *provider.HostClient
}

func main() {
	err := provider.Main("command", func(h *provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		return &commandProvider{host: h}, nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func (p *commandProvider) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

func (p *commandProvider) GetSchema(context.Context, *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	return &pulumirpc.GetSchemaResponse{Schema: `{"name":"command","version":"` + version + `"}`}, nil
}

func (p *commandProvider) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *commandProvider) DiffConfig(context.Context, *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
}

func (p *commandProvider) Configure(context.Context, *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	return &pulumirpc.ConfigureResponse{AcceptSecrets: true, SupportsPreview: true, AcceptResources: true}, nil
}

func (p *commandProvider) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func checkType(urn string) (string, error) {
	t := string(resource.URN(urn).Type())
	if t != localCommand && t != remoteCommand {
		return "", fmt.Errorf("unknown resource type %q (this e2e command provider has %s and %s)",
			t, localCommand, remoteCommand)
	}
	return t, nil
}

func (p *commandProvider) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	if _, err := checkType(req.GetUrn()); err != nil {
		return nil, err
	}
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

// Keys of the state that are outputs, not inputs.
var outputKeys = map[resource.PropertyKey]bool{"stdout": true, "stderr": true, "assets": true, "archive": true}

func (p *commandProvider) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	olds, err := plugin.UnmarshalProperties(req.GetOldInputs(), opts)
	if err != nil {
		return nil, err
	}
	if len(olds) == 0 { // state written without inputs: compare against the state's input keys
		if olds, err = plugin.UnmarshalProperties(req.GetOlds(), opts); err != nil {
			return nil, err
		}
		for k := range outputKeys {
			delete(olds, k)
		}
	}
	news, err := plugin.UnmarshalProperties(req.GetNews(), opts)
	if err != nil {
		return nil, err
	}
	keys := map[resource.PropertyKey]bool{}
	for k := range olds {
		keys[k] = true
	}
	for k := range news {
		keys[k] = true
	}
	var diffs, replaces []string
	for k := range keys {
		o, n := olds[k], news[k]
		if n.ContainsUnknowns() || !o.DeepEquals(n) {
			diffs = append(diffs, string(k))
			if k == "triggers" {
				replaces = append(replaces, string(k))
			}
		}
	}
	sort.Strings(diffs)
	changes := pulumirpc.DiffResponse_DIFF_NONE
	if len(diffs) > 0 {
		changes = pulumirpc.DiffResponse_DIFF_SOME
	}
	return &pulumirpc.DiffResponse{Changes: changes, Diffs: diffs, Replaces: replaces}, nil
}

// plain returns v without secret or output wrappers.
func plain(v resource.PropertyValue) resource.PropertyValue {
	for {
		switch {
		case v.IsSecret():
			v = v.SecretValue().Element
		case v.IsOutput():
			v = v.OutputValue().Element
		default:
			return v
		}
	}
}

func str(m resource.PropertyMap, k resource.PropertyKey) (string, bool) {
	v, ok := m[k]
	if !ok {
		return "", false
	}
	v = plain(v)
	if !v.IsString() {
		return "", false
	}
	return v.StringValue(), true
}

func strMap(m resource.PropertyMap, k resource.PropertyKey) map[string]string {
	out := map[string]string{}
	if v, ok := m[k]; ok && plain(v).IsObject() {
		for kk, vv := range plain(v).ObjectValue() {
			if vv = plain(vv); vv.IsString() {
				out[string(kk)] = vv.StringValue()
			}
		}
	}
	return out
}

func strList(m resource.PropertyMap, k resource.PropertyKey) []string {
	var out []string
	if v, ok := m[k]; ok && plain(v).IsArray() {
		for _, e := range plain(v).ArrayValue() {
			if e = plain(e); e.IsString() {
				out = append(out, e.StringValue())
			}
		}
	}
	return out
}

func boolOr(m resource.PropertyMap, k resource.PropertyKey, def bool) bool {
	if v, ok := m[k]; ok && plain(v).IsBool() {
		return plain(v).BoolValue()
	}
	return def
}

func numOr(m resource.PropertyMap, k resource.PropertyKey, def float64) float64 {
	if v, ok := m[k]; ok && plain(v).IsNumber() {
		return plain(v).NumberValue()
	}
	return def
}

// run executes cmdline with the inputs in, prevOut/prevErr being the last outputs.
func run(ctx context.Context, typ, cmdline string, in resource.PropertyMap, prevOut, prevErr string,
) (string, string, error) {
	env := strMap(in, "environment")
	if boolOr(in, "addPreviousOutputInEnv", true) {
		if prevOut != "" {
			env["PULUMI_COMMAND_STDOUT"] = prevOut
		}
		if prevErr != "" {
			env["PULUMI_COMMAND_STDERR"] = prevErr
		}
	}
	stdin, _ := str(in, "stdin")
	var stdout, stderr, both bytes.Buffer
	var err error
	if typ == localCommand {
		args := strList(in, "interpreter")
		if len(args) == 0 {
			args = []string{"/bin/sh", "-c"}
		}
		args = append(args, cmdline)
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Stdout = ioMulti(&stdout, &both)
		cmd.Stderr = ioMulti(&stderr, &both)
		if dir, ok := str(in, "dir"); ok {
			cmd.Dir = dir
		}
		cmd.Env = os.Environ()
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		if stdin != "" {
			cmd.Stdin = strings.NewReader(stdin)
		}
		err = cmd.Run()
	} else {
		err = runRemote(ctx, in, cmdline, env, stdin, &stdout, &stderr, &both)
	}
	if err != nil {
		return "", "", fmt.Errorf("%w: running %q:\n%s", err, cmdline, both.String())
	}
	return strings.TrimSuffix(stdout.String(), "\n"), strings.TrimSuffix(stderr.String(), "\n"), nil
}

type multi struct{ a, b *bytes.Buffer }

func (m multi) Write(p []byte) (int, error) { m.b.Write(p); return m.a.Write(p) }

func ioMulti(a, b *bytes.Buffer) multi { return multi{a, b} }

func runRemote(ctx context.Context, in resource.PropertyMap, cmdline string, env map[string]string,
	stdin string, stdout, stderr, both *bytes.Buffer,
) error {
	cv, ok := in["connection"]
	if !ok || !plain(cv).IsObject() {
		return fmt.Errorf("remote command: connection is required")
	}
	conn := plain(cv).ObjectValue()
	host, _ := str(conn, "host")
	user, ok := str(conn, "user")
	if !ok {
		user = "root"
	}
	port := int(numOr(conn, "port", 22))
	cfg := &ssh.ClientConfig{User: user, HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout: time.Duration(numOr(conn, "perDialTimeout", 15)) * time.Second}
	if key, ok := str(conn, "privateKey"); ok {
		var signer ssh.Signer
		var err error
		if pass, ok := str(conn, "privateKeyPassword"); ok {
			signer, err = ssh.ParsePrivateKeyWithPassphrase([]byte(key), []byte(pass))
		} else {
			signer, err = ssh.ParsePrivateKey([]byte(key))
		}
		if err != nil {
			return fmt.Errorf("remote command: parsing privateKey: %w", err)
		}
		cfg.Auth = append(cfg.Auth, ssh.PublicKeys(signer))
	}
	if pw, ok := str(conn, "password"); ok {
		cfg.Auth = append(cfg.Auth, ssh.Password(pw))
	}
	sock, ok := str(conn, "agentSocketPath")
	if !ok {
		sock = os.Getenv("SSH_AUTH_SOCK")
	}
	if sock != "" {
		if ac, err := net.Dial("unix", sock); err == nil {
			defer ac.Close()
			cfg.Auth = append(cfg.Auth, ssh.PublicKeysCallback(agent.NewClient(ac).Signers))
		}
	}
	addr := net.JoinHostPort(host, fmt.Sprint(port))
	limit := int(numOr(conn, "dialErrorLimit", 10))
	var client *ssh.Client
	var err error
	for i := 0; limit < 0 || i < max(limit, 1); i++ {
		if client, err = ssh.Dial("tcp", addr, cfg); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	if err != nil {
		return fmt.Errorf("remote command: dialing %s: %w", addr, err)
	}
	defer client.Close()
	session, err := client.NewSession()
	if err != nil {
		return err
	}
	defer session.Close()
	for k, v := range env {
		if err := session.Setenv(k, v); err != nil {
			fmt.Fprintf(os.Stderr, "warning: unable to set %s on the remote (AcceptEnv?): %v\n", k, err)
		}
	}
	session.Stdout = ioMulti(stdout, both)
	session.Stderr = ioMulti(stderr, both)
	if stdin != "" {
		session.Stdin = strings.NewReader(stdin)
	}
	return session.Run(cmdline)
}

func (p *commandProvider) respond(in resource.PropertyMap, stdout, stderr resource.PropertyValue) (*structpb.Struct, error) {
	out := in.Copy()
	out["stdout"] = stdout
	out["stderr"] = stderr
	return plugin.MarshalProperties(out, opts)
}

var unknown = resource.MakeComputed(resource.NewStringProperty(""))

func (p *commandProvider) Create(ctx context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	typ, err := checkType(req.GetUrn())
	if err != nil {
		return nil, err
	}
	in, err := plugin.UnmarshalProperties(req.GetProperties(), opts)
	if err != nil {
		return nil, err
	}
	id, err := resource.NewUniqueHex(string(resource.URN(req.GetUrn()).Name()), 8, 0)
	if err != nil {
		return nil, err
	}
	create, hasCreate := str(in, "create")
	if req.GetPreview() {
		props, err := p.respond(in, unknown, unknown)
		return &pulumirpc.CreateResponse{Id: id, Properties: props}, err
	}
	stdout, stderr := "", ""
	if hasCreate {
		if stdout, stderr, err = run(ctx, typ, create, in, "", ""); err != nil {
			return nil, err
		}
	}
	props, err := p.respond(in, resource.NewStringProperty(stdout), resource.NewStringProperty(stderr))
	return &pulumirpc.CreateResponse{Id: id, Properties: props}, err
}

func (p *commandProvider) Update(ctx context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	typ, err := checkType(req.GetUrn())
	if err != nil {
		return nil, err
	}
	olds, err := plugin.UnmarshalProperties(req.GetOlds(), opts)
	if err != nil {
		return nil, err
	}
	news, err := plugin.UnmarshalProperties(req.GetNews(), opts)
	if err != nil {
		return nil, err
	}
	prevOut, _ := str(olds, "stdout")
	prevErr, _ := str(olds, "stderr")
	if req.GetPreview() {
		props, err := p.respond(news, unknown, unknown)
		return &pulumirpc.UpdateResponse{Properties: props}, err
	}
	cmdline, ok := str(news, "update")
	if !ok {
		cmdline, ok = str(news, "create")
	}
	stdout, stderr := prevOut, prevErr
	if ok {
		if stdout, stderr, err = run(ctx, typ, cmdline, news, prevOut, prevErr); err != nil {
			return nil, err
		}
	}
	props, err := p.respond(news, resource.NewStringProperty(stdout), resource.NewStringProperty(stderr))
	return &pulumirpc.UpdateResponse{Properties: props}, err
}

func (p *commandProvider) Delete(ctx context.Context, req *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	typ, err := checkType(req.GetUrn())
	if err != nil {
		return nil, err
	}
	state, err := plugin.UnmarshalProperties(req.GetProperties(), opts)
	if err != nil {
		return nil, err
	}
	if del, ok := str(state, "delete"); ok {
		prevOut, _ := str(state, "stdout")
		prevErr, _ := str(state, "stderr")
		if _, _, err := run(ctx, typ, del, state, prevOut, prevErr); err != nil {
			return nil, err
		}
	}
	return &emptypb.Empty{}, nil
}

func (p *commandProvider) Read(_ context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: req.GetProperties(), Inputs: req.GetInputs()}, nil
}
