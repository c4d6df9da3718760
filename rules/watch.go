package rules

import (
	"context"
	"time"

	"golang.org/x/sys/unix"
)

// nfnlgrpNftables is the netlink multicast group on which nf_tables
// announces every ruleset change (NFNLGRP_NFTABLES in linux/netfilter/nfnetlink.h).
const nfnlgrpNftables = 7

// WatchChanges signals (coalesced over 20 ms, never blocking) whenever the
// nf_tables ruleset of this network namespace changes — which is how
// iptables-nft, fw4 and `nft flush ruleset` all change it. The daemon then
// compares its snapshot at once instead of waiting for the next heal tick,
// so a firewall restart leaves a gap of milliseconds, not seconds. With the
// legacy backend nothing is announced and the periodic check remains. ok is
// false when the event socket cannot be opened; the channel closes when ctx
// ends.
func WatchChanges(ctx context.Context) (changes <-chan struct{}, ok bool) {
	out := make(chan struct{}, 1)
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		close(out)
		return out, false
	}
	sa := &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (nfnlgrpNftables - 1)}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		close(out)
		return out, false
	}
	// A receive timeout lets the loop notice ctx without a second fd.
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	// A big buffer: a full restore announces every rule.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	go func() {
		defer close(out)
		defer unix.Close(fd)
		buf := make([]byte, 64*1024)
		var pending <-chan time.Time
		for ctx.Err() == nil {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if n > 0 || err == unix.ENOBUFS {
				// ENOBUFS: we lost messages, which also means "changed".
				if pending == nil {
					pending = time.After(20 * time.Millisecond)
				}
			}
			select {
			case <-pending:
				pending = nil
				select {
				case out <- struct{}{}:
				default:
				}
			default:
			}
		}
	}()
	return out, true
}
