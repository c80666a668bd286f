// emqx-loadgen: MQTT clients over TLS that connect, hold their connection with keepalive
// pings, and report what happened as one JSON document on stdout.
//
// Each client dials from one of the given source addresses (127.x on one host), with
// IP_BIND_ADDRESS_NO_PORT, so the kernel picks its port at connect time per destination
// and the clients do not eat the ephemeral ports Nginx needs toward the brokers.
//
// With -rounds every client connects again once all have (a reconnect storm), with -resume
// through the TLS session it got before; with -churn each drops its connection at the CONNACK
// (the handshake rate). The report gives each round's established, resumed, failed by reason
// and rate, and the generator's own peak memory.
//
//	emqx-loadgen -addr 127.0.0.1:8884 -ca ca.pem -clients 1000 -sources 127.0.0.10-127.0.0.19 \
//	             -hold 30s -username u -password p
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// IP_BIND_ADDRESS_NO_PORT (linux/in.h): bind the address now, choose the port at connect().
const ipBindAddressNoPort = 24

// round: every client connects once (a reconnect storm when they all come back together).
type round struct {
	Established int            `json:"established"`
	Resumed     int            `json:"resumed"` // TLS sessions resumed: an abbreviated handshake
	Failed      map[string]int `json:"failed"`
	ConnectRate float64        `json:"connectsPerSecond"`
	Seconds     float64        `json:"connectSeconds"`
}

type report struct {
	round              // the last round
	Clients   int      `json:"clients"`
	StillHeld int      `json:"stillHeld"` // open after -hold: every keepalive ping answered
	Rounds    []round  `json:"rounds"`
	MaxRSSKiB int64    `json:"maxRssKiB"`
	Sources   []string `json:"sources"`
}

func sources(spec string) ([]net.IP, error) {
	first, last, found := strings.Cut(spec, "-")
	start := net.ParseIP(first).To4()
	end := start
	if found {
		end = net.ParseIP(last).To4()
	}
	if start == nil || end == nil {
		return nil, fmt.Errorf("-sources %q: want an IPv4 address or a range a.b.c.d-a.b.c.e", spec)
	}
	var ips []net.IP
	for ip := append(net.IP{}, start...); ; {
		ips = append(ips, append(net.IP{}, ip...))
		if ip.Equal(end) {
			return ips, nil
		}
		for i := 3; i >= 0; i-- {
			ip[i]++
			if ip[i] != 0 {
				break
			}
		}
		if len(ips) > 1<<16 {
			return nil, errors.New("-sources: more than 65536 addresses")
		}
	}
}

func dialer(source net.IP) *net.Dialer {
	return &net.Dialer{
		Timeout:   10 * time.Second,
		LocalAddr: &net.TCPAddr{IP: source},
		Control: func(_, _ string, c syscall.RawConn) error {
			var failure error
			err := c.Control(func(fd uintptr) {
				failure = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
			})
			if err != nil {
				return err
			}
			return failure
		},
	}
}

func reason(err error) string {
	text := err.Error()
	for _, known := range []string{
		"not Authorized", "bad user name or password", "connection refused", "EOF",
		"i/o timeout", "connection reset", "cannot assign requested address", "network Error",
	} {
		if strings.Contains(strings.ToLower(text), strings.ToLower(known)) {
			return known
		}
	}
	return text
}

func maxRSS() int64 {
	var usage syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &usage) != nil {
		return 0
	}
	return usage.Maxrss
}

// tlsOpener dials like paho's "tls" scheme would, through the client's own session cache, and
// counts resumed sessions (paho does not expose the TLS connection).
func tlsOpener(source net.IP, config *tls.Config, resumed *atomic.Int64) mqtt.OpenConnectionFunc {
	return func(uri *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
		conn, err := tls.DialWithDialer(dialer(source), "tcp", uri.Host, config)
		if err != nil {
			return nil, err
		}
		if conn.ConnectionState().DidResume {
			resumed.Add(1)
		}
		return conn, nil
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8884", "the load balancer's TLS listener")
	caFile := flag.String("ca", "", "PEM CA that signed the listener's certificate")
	serverName := flag.String("server-name", "localhost", "name to verify the certificate against")
	clients := flag.Int("clients", 10, "clients to connect")
	sourceSpec := flag.String("sources", "127.0.0.1", "source address or range to dial from")
	hold := flag.Duration("hold", 5*time.Second, "how long to hold the connections once all tried")
	keepalive := flag.Duration("keepalive", 2*time.Second, "MQTT keepalive (pings while held)")
	pingTimeout := flag.Duration("ping-timeout", 10*time.Second, "how long a PINGRESP may take before the client drops")
	parallel := flag.Int("parallel", 64, "connects in flight at once")
	username := flag.String("username", "", "MQTT username")
	password := flag.String("password", "", "MQTT password")
	prefix := flag.String("client-id-prefix", "loadgen", "client ids are <prefix>-<n>")
	rounds := flag.Int("rounds", 1, "times every client connects; all disconnect between rounds")
	pause := flag.Bool("pause", false, "between rounds, say so on stderr and wait for a line on stdin")
	churn := flag.Bool("churn", false, "disconnect right after the CONNACK (handshake rate, nothing held)")
	resume := flag.Bool("resume", false, "each client keeps its TLS session (ticket or id) for its next round")
	flag.Parse()

	ips, err := sources(*sourceSpec)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	roots := x509.NewCertPool()
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil || !roots.AppendCertsFromPEM(pem) {
			fmt.Fprintf(os.Stderr, "-ca %s: no PEM certificate (%v)\n", *caFile, err)
			os.Exit(2)
		}
	}
	configs := make([]*tls.Config, *clients)
	for n := range configs {
		configs[n] = &tls.Config{RootCAs: roots, ServerName: *serverName, MinVersion: tls.VersionTLS12}
		if *resume {
			configs[n].ClientSessionCache = tls.NewLRUClientSessionCache(1)
		}
	}
	broker := &url.URL{Scheme: "tls", Host: *addr}

	rep := report{Clients: *clients}
	for _, ip := range ips {
		rep.Sources = append(rep.Sources, ip.String())
	}
	stdin := bufio.NewReader(os.Stdin)
	var held []mqtt.Client
	for r := 0; r < *rounds; r++ {
		if r > 0 {
			for _, client := range held {
				client.Disconnect(100)
			}
			held = nil
			if *pause {
				fmt.Fprintf(os.Stderr, "round %d done\n", r)
				if _, err := stdin.ReadString('\n'); err != nil {
					fmt.Fprintln(os.Stderr, "stdin closed between rounds:", err)
					os.Exit(2)
				}
			}
		}
		var mu sync.Mutex
		var resumed atomic.Int64
		this := round{Failed: map[string]int{}}
		slots := make(chan struct{}, *parallel)
		var wg sync.WaitGroup
		started := time.Now()
		for n := 0; n < *clients; n++ {
			wg.Add(1)
			slots <- struct{}{}
			go func(n int) {
				defer wg.Done()
				defer func() { <-slots }()
				opts := mqtt.NewClientOptions().
					AddBroker(broker.String()).
					SetClientID(fmt.Sprintf("%s-%d", *prefix, n)).
					SetUsername(*username).
					SetPassword(*password).
					SetKeepAlive(*keepalive).
					SetPingTimeout(*pingTimeout).
					SetAutoReconnect(false).
					SetConnectRetry(false).
					SetProtocolVersion(4).
					SetCustomOpenConnectionFn(tlsOpener(ips[n%len(ips)], configs[n], &resumed))
				client := mqtt.NewClient(opts)
				token := client.Connect()
				ok := token.WaitTimeout(15 * time.Second)
				if ok && token.Error() == nil && *churn {
					client.Disconnect(0)
				}
				mu.Lock()
				defer mu.Unlock()
				switch {
				case !ok:
					this.Failed["timeout"]++
				case token.Error() != nil:
					this.Failed[reason(token.Error())]++
				default:
					this.Established++
					if !*churn {
						held = append(held, client)
					}
				}
			}(n)
		}
		wg.Wait()
		this.Seconds = time.Since(started).Seconds()
		this.Resumed = int(resumed.Load())
		if this.Seconds > 0 {
			this.ConnectRate = float64(this.Established) / this.Seconds
		}
		rep.Rounds = append(rep.Rounds, this)
		rep.round = this
	}
	// Held with keepalive: paho pings every keepalive and drops a client whose PINGRESP does
	// not come back within the ping timeout, so a connection still open has had its answers.
	time.Sleep(*hold)
	for _, client := range held {
		if client.IsConnectionOpen() {
			rep.StillHeld++
		}
	}
	runtime.GC()
	rep.MaxRSSKiB = maxRSS()
	for _, client := range held {
		client.Disconnect(100)
	}
	out, _ := json.Marshal(rep) // map keys come out sorted
	fmt.Println(string(out))
}
