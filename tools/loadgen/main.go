// emqx-loadgen: MQTT clients over TLS that connect, hold their connection with keepalive
// pings, and report what happened as one JSON document on stdout.
//
// Each client dials from one of the given source addresses (127.x on one host), with
// IP_BIND_ADDRESS_NO_PORT, so the kernel picks its port at connect time per destination
// and the clients do not eat the ephemeral ports Nginx needs toward the brokers.
//
//	emqx-loadgen -addr 127.0.0.1:8884 -ca ca.pem -clients 1000 -sources 127.0.0.10-127.0.0.19 \
//	             -hold 30s -username u -password p
package main

import (
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
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// IP_BIND_ADDRESS_NO_PORT (linux/in.h): bind the address now, choose the port at connect().
const ipBindAddressNoPort = 24

type report struct {
	Clients     int            `json:"clients"`
	Established int            `json:"established"`
	StillHeld   int            `json:"stillHeld"` // open after -hold: every keepalive ping answered
	Failed      map[string]int `json:"failed"`
	ConnectRate float64        `json:"connectsPerSecond"`
	Seconds     float64        `json:"connectSeconds"`
	MaxRSSKiB   int64          `json:"maxRssKiB"`
	Sources     []string       `json:"sources"`
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
	tlsConfig := &tls.Config{RootCAs: roots, ServerName: *serverName, MinVersion: tls.VersionTLS12}
	broker := &url.URL{Scheme: "tls", Host: *addr}

	var mu sync.Mutex
	rep := report{Clients: *clients, Failed: map[string]int{}}
	for _, ip := range ips {
		rep.Sources = append(rep.Sources, ip.String())
	}
	var held []mqtt.Client
	slots := make(chan struct{}, *parallel)
	var wg sync.WaitGroup
	started := time.Now()
	for n := 0; n < *clients; n++ {
		wg.Add(1)
		slots <- struct{}{}
		go func(n int) {
			defer wg.Done()
			defer func() { <-slots }()
			source := ips[n%len(ips)]
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
				SetTLSConfig(tlsConfig).
				SetDialer(dialer(source))
			client := mqtt.NewClient(opts)
			token := client.Connect()
			ok := token.WaitTimeout(15 * time.Second)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case !ok:
				rep.Failed["timeout"]++
			case token.Error() != nil:
				rep.Failed[reason(token.Error())]++
			default:
				rep.Established++
				held = append(held, client)
			}
		}(n)
	}
	wg.Wait()
	rep.Seconds = time.Since(started).Seconds()
	if rep.Seconds > 0 {
		rep.ConnectRate = float64(rep.Established) / rep.Seconds
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
