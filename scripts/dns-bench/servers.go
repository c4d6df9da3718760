package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// A server under test. Each runs as its own process pinned to the server
// core (taskset), Go ones with GOMAXPROCS=1, listening on filterAddr and
// forwarding to the bench upstream, with caching off (every allowed query
// reaches the upstream, as famguard's do) and blocked names answered
// 0.0.0.0. The lists are the same domains in each server's own format.
type server struct {
	name  string
	check answerCheck
	// strictSet is famguard-strict's base set name (its sets are read
	// after the query load: the set memory); empty for the others.
	strictSet string
	// start launches the server on the lists in dir (written by
	// writeLists); prefix pins it to its core.
	start func(prefix []string, dir string) (*exec.Cmd, error)
}

// benchSet is famguard-strict's base set name (sets fg-bench4, fg-bench6).
const benchSet = "fg-bench"

// peerVersions are the pinned versions scripts/bench-peers/build.sh builds.
var peerVersions = map[string]string{"blocky": "v0.26.2", "adguardhome": "v0.107.63"}

func servers(names []string, self, peers string) ([]server, error) {
	var out []server
	for _, n := range names {
		var s server
		switch n {
		case "echo":
			s = server{name: n, check: checkEcho, start: func(prefix []string, dir string) (*exec.Cmd, error) {
				return startGo(n, append(prefix, self, "serve-echo", filterAddr), dir)
			}}
		case "forwarder":
			s = server{name: n, check: checkEcho, start: func(prefix []string, dir string) (*exec.Cmd, error) {
				return startGo(n, append(prefix, self, "serve-forwarder", filepath.Join(dir, "plain.txt"), filterAddr, upstreamAddr), dir)
			}}
		case "famguard":
			s = server{name: n, start: func(prefix []string, dir string) (*exec.Cmd, error) {
				return startGo(n, append(prefix, self, "serve", filepath.Join(dir, "famguard"), filterAddr, upstreamAddr), dir)
			}}
		case "famguard-strict":
			// famguard with strict egress on for the generator's device:
			// real kernel sets in the bench's namespace, emptied at start.
			s = server{name: n, strictSet: benchSet, start: func(prefix []string, dir string) (*exec.Cmd, error) {
				return startGo(n, append(prefix, self, "serve", "--strict", benchSet, "--fresh-sets", filepath.Join(dir, "famguard"), filterAddr, upstreamAddr), dir)
			}}
		case "dnsmasq":
			s = server{name: n, start: func(prefix []string, dir string) (*exec.Cmd, error) {
				return startDnsmasq(prefix, filterAddr, "--conf-file="+filepath.Join(dir, "dnsmasq.conf"),
					"--server="+strings.Replace(upstreamAddr, ":", "#", 1), "--cache-size=0")
			}}
		case "blocky", "adguardhome":
			bin, err := filepath.Abs(filepath.Join(peers, n+"-"+peerVersions[n]))
			if err != nil {
				return nil, err
			}
			if _, err := os.Stat(bin); err != nil {
				return nil, fmt.Errorf("%s %s is not built (%v): run scripts/bench-peers/build.sh (`make bench-peers` does)", n, peerVersions[n], err)
			}
			if n == "blocky" {
				s = server{name: n, start: func(prefix []string, dir string) (*exec.Cmd, error) {
					return startGo(n, append(prefix, bin, "--config", filepath.Join(dir, "blocky.yml")), dir)
				}}
			} else {
				s = server{name: n, start: func(prefix []string, dir string) (*exec.Cmd, error) {
					work := filepath.Join(dir, "adguard-work")
					if err := os.MkdirAll(work, 0o755); err != nil {
						return nil, err
					}
					return startGo(n, append(prefix, bin, "--config", filepath.Join(dir, "adguard.yaml"), "--work-dir", work,
						"--no-check-update", "--no-permcheck"), dir)
				}}
			}
		default:
			return nil, fmt.Errorf("unknown server %q (echo, forwarder, famguard, famguard-strict, dnsmasq, blocky, adguardhome)", n)
		}
		out = append(out, s)
	}
	return out, nil
}

// startGo starts a Go server with one P, its output in dir/NAME.log
// (shown when it fails to become ready).
func startGo(name string, args []string, dir string) (*exec.Cmd, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.Dir = dir
	log, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	return cmd, cmd.Start()
}

// writeLists writes domains into dir in every server's format: one list
// file for famguard (a category), address= lines for dnsmasq, a plain list
// for blocky, ||domain^ rules for AdGuard Home (each blocks the domain and
// its subdomains, as famguard's lists do), and the two peers' configuration.
func writeLists(dir string, domains []string) error {
	if err := os.MkdirAll(filepath.Join(dir, "famguard"), 0o755); err != nil {
		return err
	}
	var plain, dm, ag strings.Builder
	for _, d := range domains {
		plain.WriteString(d + "\n")
		dm.WriteString("address=/" + d + "/0.0.0.0\n")
		ag.WriteString("||" + d + "^\n")
	}
	files := map[string]string{
		"famguard/blocked.txt": plain.String(),
		"plain.txt":            plain.String(),
		"dnsmasq.conf":         dm.String(),
		"adguard-filter.txt":   ag.String(),
		"blocky.yml":           blockyConfig(dir),
		"adguard.yaml":         adguardConfig(dir),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// blockyConfig: one upstream, the list as a local file, blocking for every
// client, caching off (maxTime < 0), the list loaded before serving, and no
// query log (blocky's default logs every query to the console; famguard
// and dnsmasq log none, AdGuard Home's is switched off below).
func blockyConfig(dir string) string {
	return `upstreams:
  init:
    strategy: fast
  groups:
    default:
      - ` + upstreamAddr + `
blocking:
  denylists:
    bench:
      - ` + filepath.Join(dir, "plain.txt") + `
  clientGroupsBlock:
    default:
      - bench
  blockType: zeroIp
  loading:
    refreshPeriod: 0
    strategy: blocking
    maxErrorsPerSource: -1
caching:
  maxTime: -1
  cacheTimeNegative: -1
ports:
  dns: ` + filterAddr + `
queryLog:
  type: none
log:
  level: warn
`
}

// adguardConfig: one upstream, the list as a local filter file, null-IP
// blocking, the cache, rate limit, query log and statistics off (none of
// them is in famguard's query path either).
func adguardConfig(dir string) string {
	host, port := strings.Split(filterAddr, ":")[0], strings.Split(filterAddr, ":")[1]
	return `http:
  address: 127.0.0.1:3000
dns:
  bind_hosts:
    - ` + host + `
  port: ` + port + `
  upstream_dns:
    - ` + upstreamAddr + `
  bootstrap_dns: []
  ratelimit: 0
  cache_size: 0
  refuse_any: false
  use_private_ptr_resolvers: false
  hostsfile_enabled: false
querylog:
  enabled: false
  file_enabled: false
statistics:
  enabled: false
filters:
  - enabled: true
    url: ` + filepath.Join(dir, "adguard-filter.txt") + `
    name: bench
    id: 1
filtering:
  protection_enabled: true
  filtering_enabled: true
  blocking_mode: null_ip
  safe_fs_patterns:
    - ` + filepath.Join(dir, "*.txt") + `
clients:
  runtime_sources:
    whois: false
    arp: false
    rdns: false
    dhcp: false
    hosts: false
dhcp:
  enabled: false
schema_version: 29
`
}
