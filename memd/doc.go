// Package memd is the memory balancer: the qmemman algorithm as pure
// functions (algo.go), the daemon state and procedures that apply it
// (system.go: do_balance, do_balloon, do_balloon_dom), the Unix socket
// protocol (server.go) and its client for a starting qube (client.go).
//
// memd knows the hypervisor only through the Host interface (host.go).
// Sub-packages: virtclient (the Host qmemmand uses: libvirt in a helper
// process), virthost (the libvirt calls themselves, run by qmemmand-virt),
// qmemmand (the command line).
package memd
