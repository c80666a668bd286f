// A three-node EMQX cluster behind Nginx on one Docker host, from the emqx-cluster component
// package (`pulumi package add ../..` generates sdks/emqx-cluster), with one MQTT client whose
// password another resource generates, and the nodes' address another resource's output.
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import * as emqx from "@pulumi/emqx-cluster";

// Host-specific values: set them with `pulumi config set` (sysctls with `--path`).
const config = new pulumi.Config();

// A secret Output, unknown until created: the component hashes it when it is known.
const appPassword = new random.RandomPassword("app-password", { length: 24, special: false });

// The nodes' address as another resource's output, unknown until created: here a shuffle of the
// one configured address, where a real program passes its VM's private IP. The component writes
// it into node names, nginx.conf and host scripts once it is known.
const hostAddress = new random.RandomShuffle("host-address", {
    inputs: [config.get("advertiseAddress") ?? "127.0.0.1"],
});

const cluster = new emqx.EmqxCluster("edge", {
    nodes: 3,
    tlsMode: "self-signed",
    dockerHost: config.get("dockerHost") ?? "unix:///var/run/docker.sock",
    advertiseAddress: hostAddress.results[0],
    dataDir: config.get("dataDir") ?? "/var/lib/emqx-cluster/typescript-example",
    publicHostname: config.get("publicHostname"),
    sysctlDropIn: config.get("sysctlDropIn"),
    brokerNofileLimit: config.getNumber("brokerNofileLimit"),
    lbWorkerConnections: config.getNumber("lbWorkerConnections"),
    // `key: "null"` leaves that sysctl alone (EmqxClusterArgs.sysctls).
    sysctls: config.getObject<Record<string, string>>("sysctls"),
    mqttClients: [{ username: "app", password: appPassword.result }],
    mqttAcl: [{ permission: "allow", username: "app", topics: ["app/#"] }],
});

export const endpoint = cluster.endpoint;
export const tlsCertificate = cluster.tlsCertificate;
export const mqttPassword = pulumi.secret(appPassword.result);
