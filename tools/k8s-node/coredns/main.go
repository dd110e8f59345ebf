// CoreDNS for the test node's cluster DNS, with only the plugins its Corefile uses: the
// kubernetes plugin answers for Services and the pods behind headless Services (the MPI
// operator's workers) from the test control plane. Same code as the release binary; the
// plugin list is set at compile time as CoreDNS documents for custom builds.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	// In CoreDNS's own order (core/dnsserver/zdirectives.go): a plugin sees the requests
	// of those after it.
	dnsserver.Directives = []string{"bind", "ready", "errors", "log", "cache", "kubernetes"}
}

func main() {
	coremain.Run()
}
