package rules

import (
	"encoding/binary"
	"errors"

	"golang.org/x/sys/unix"
)

// The nf_tables generation: a counter the kernel bumps with every committed
// ruleset change in the network namespace, whoever makes it (iptables-nft,
// fw4, nft). Asking for it is one netlink round trip, where reading the
// rules back is an iptables-save exec that parses every rule (tens of
// milliseconds of CPU at 1000 devices). So the Kernel reads the rules back
// only when the generation moved since its last read-back; with the legacy
// backend (which nf_tables does not see) it always reads them.

const (
	nfnlSubsysNftables = 10 // NFNL_SUBSYS_NFTABLES
	nftMsgGetGen       = 16 // NFT_MSG_GETGEN
	nftMsgNewGen       = 15 // NFT_MSG_NEWGEN
	nftaGenID          = 1  // NFTA_GEN_ID
)

// nftGeneration returns the namespace's nf_tables generation.
func nftGeneration() (uint32, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(1e9))
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	// nlmsghdr (16 bytes) + nfgenmsg (family AF_UNSPEC, version 0, res_id 0).
	req := make([]byte, unix.NLMSG_HDRLEN+4)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], nfnlSubsysNftables<<8|nftMsgGetGen)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(req[8:], 1) // sequence
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, err
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, err
	}
	return parseGeneration(buf[:n])
}

// parseGeneration reads NFTA_GEN_ID out of a NFT_MSG_NEWGEN answer.
func parseGeneration(msg []byte) (uint32, error) {
	if len(msg) < unix.NLMSG_HDRLEN+4 {
		return 0, errors.New("nf_tables generation: short answer")
	}
	l := int(binary.NativeEndian.Uint32(msg[0:]))
	typ := binary.NativeEndian.Uint16(msg[4:])
	if l > len(msg) || l < unix.NLMSG_HDRLEN+4 {
		return 0, errors.New("nf_tables generation: bad length")
	}
	if typ == unix.NLMSG_ERROR {
		if l >= unix.NLMSG_HDRLEN+4 {
			if e := int32(binary.NativeEndian.Uint32(msg[unix.NLMSG_HDRLEN:])); e != 0 {
				return 0, unix.Errno(-e)
			}
		}
		return 0, errors.New("nf_tables generation: unexpected acknowledgement")
	}
	if typ != nfnlSubsysNftables<<8|nftMsgNewGen {
		return 0, errors.New("nf_tables generation: unexpected answer")
	}
	for a := msg[unix.NLMSG_HDRLEN+4 : l]; len(a) >= 4; {
		alen := int(binary.NativeEndian.Uint16(a[0:]))
		atyp := binary.NativeEndian.Uint16(a[2:]) & 0x3fff // without NLA_F_NESTED / byte-order flags
		if alen < 4 || alen > len(a) {
			break
		}
		if atyp == nftaGenID && alen >= 8 {
			return binary.BigEndian.Uint32(a[4:]), nil
		}
		step := (alen + 3) &^ 3 // attributes are 4-byte aligned
		if step > len(a) {
			break
		}
		a = a[step:]
	}
	return 0, errors.New("nf_tables generation: no generation in the answer")
}
