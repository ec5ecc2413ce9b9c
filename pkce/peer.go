package pkce

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// socketTables are Linux's tables of TCP sockets (proc(5): /proc/net/tcp, /proc/net/tcp6). Each line names a
// socket's local and remote address and the uid that owns it, for every user's sockets, which is what lets the
// loopback server tell the person's browser from another user's process. Elsewhere they do not exist and the check
// is off.
var socketTables = []string{"/proc/net/tcp", "/proc/net/tcp6"}

// errNoPeerCheck means the socket tables cannot say who owns a connection here (not Linux, or /proc not mounted).
var errNoPeerCheck = errors.New("pkce: socket owners are not visible here")

// peerCheck tells the uid of the process at the other end of a loopback TCP connection.
type peerCheck struct {
	// tables are read in order; nil means socketTables.
	tables []string
}

// available tells whether the tables show the socket listening on addr as this process's: only then can a peer's
// absence from them mean anything.
func (p peerCheck) available(addr netip.AddrPort) bool {
	uid, err := p.owner(addr, netip.AddrPortFrom(zeroAddr(addr.Addr()), 0))
	return err == nil && uid == os.Getuid()
}

// availableOn tells whether the check is available for every listener of lns.
func (p peerCheck) availableOn(lns []net.Listener) bool {
	for _, ln := range lns {
		ap, err := netip.ParseAddrPort(ln.Addr().String())
		if err != nil || !p.available(ap) {
			return false
		}
	}
	return true
}

// owner returns the uid owning the TCP socket whose local address is local and whose remote address is remote. The
// kernel writes the tables in pieces, so a socket may be missed while they change: one not found is looked up again.
func (p peerCheck) owner(local, remote netip.AddrPort) (int, error) {
	uid, err := p.lookup(local, remote)
	if errors.Is(err, errNoSocket) {
		uid, err = p.lookup(local, remote)
	}
	return uid, err
}

// lookup reads the tables once for owner.
func (p peerCheck) lookup(local, remote netip.AddrPort) (int, error) {
	tables := p.tables
	if tables == nil {
		tables = socketTables
	}
	read := false
	for _, name := range tables {
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		read = true
		uid, err := findOwner(f, local, remote)
		f.Close()
		if !errors.Is(err, errNoSocket) {
			return uid, err
		}
	}
	if !read {
		return 0, errNoPeerCheck
	}
	return 0, errNoSocket
}

// errNoSocket means no line of the socket table has the addresses asked for.
var errNoSocket = errors.New("pkce: no such socket")

// findOwner reads a socket table in the format of /proc/net/tcp (proc(5)) and returns the uid column of the line
// whose local and remote addresses are local and remote. IPv4-mapped IPv6 addresses match their IPv4 form. A line
// with inode 0 is a socket no process holds any more (closed, in FIN_WAIT2 or TIME_WAIT), whose uid the kernel shows
// as 0: it counts as not listed, or a closed connection would pass for root's.
func findOwner(r io.Reader, local, remote netip.AddrPort) (int, error) {
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	s := bufio.NewScanner(r)
	for first := true; s.Scan(); first = false {
		f := strings.Fields(s.Text())
		if first || len(f) < 10 {
			continue // the header line, or a line of another format
		}
		l, err1 := parseSocketAddr(f[1])
		rm, err2 := parseSocketAddr(f[2])
		if err1 != nil || err2 != nil || l != local || rm != remote || f[9] == "0" {
			continue
		}
		uid, err := strconv.Atoi(f[7])
		if err != nil {
			return 0, fmt.Errorf("pkce: socket table: uid %q: %w", f[7], err)
		}
		return uid, nil
	}
	if err := s.Err(); err != nil {
		return 0, fmt.Errorf("pkce: read socket table: %w", err)
	}
	return 0, errNoSocket
}

// parseSocketAddr parses an address of /proc/net/tcp: the IP address as 8 or 32 hex digits, each 32-bit word in
// the host's byte order, a colon, and the port as 4 hex digits.
func parseSocketAddr(s string) (netip.AddrPort, error) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	if !ok || len(portHex) != 4 || (len(ipHex) != 8 && len(ipHex) != 32) {
		return netip.AddrPort{}, fmt.Errorf("pkce: socket address %q: bad form", s)
	}
	b, err := hex.DecodeString(ipHex)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("pkce: socket address %q: %w", s, err)
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("pkce: socket address %q: %w", s, err)
	}
	for i := 0; i < len(b); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(b[i:]))
	}
	ip, _ := netip.AddrFromSlice(b) // 4 or 16 bytes: always valid
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}

// zeroAddr is the unspecified address of a's family: the remote address of a listening socket.
func zeroAddr(a netip.Addr) netip.Addr {
	if a.Unmap().Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}
