package main

import (
	"crypto/md5"
	"crypto/subtle"
	"strings"
)

// md5Crypt is the "$1$" password hash (FreeBSD MD5 crypt) that `uhttpd -m`
// and `openssl passwd -1` write and rpcd checks with crypt(3).
func md5Crypt(password, salt string) string {
	const itoa = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	if i := strings.IndexByte(salt, '$'); i >= 0 {
		salt = salt[:i]
	}
	if len(salt) > 8 {
		salt = salt[:8]
	}
	pw := []byte(password)
	alt := md5.Sum([]byte(password + salt + password))
	h := md5.New()
	h.Write(pw)
	h.Write([]byte("$1$" + salt))
	for n := len(pw); n > 0; n -= 16 {
		h.Write(alt[:min(n, 16)])
	}
	for n := len(pw); n > 0; n >>= 1 {
		if n&1 != 0 {
			h.Write([]byte{0})
		} else {
			h.Write(pw[:1])
		}
	}
	sum := h.Sum(nil)
	for i := 0; i < 1000; i++ {
		h := md5.New()
		if i&1 != 0 {
			h.Write(pw)
		} else {
			h.Write(sum)
		}
		if i%3 != 0 {
			h.Write([]byte(salt))
		}
		if i%7 != 0 {
			h.Write(pw)
		}
		if i&1 != 0 {
			h.Write(sum)
		} else {
			h.Write(pw)
		}
		sum = h.Sum(nil)
	}
	var out strings.Builder
	out.WriteString("$1$" + salt + "$")
	enc := func(a, b, c byte, n int) {
		v := uint(a)<<16 | uint(b)<<8 | uint(c)
		for ; n > 0; n-- {
			out.WriteByte(itoa[v&0x3f])
			v >>= 6
		}
	}
	enc(sum[0], sum[6], sum[12], 4)
	enc(sum[1], sum[7], sum[13], 4)
	enc(sum[2], sum[8], sum[14], 4)
	enc(sum[3], sum[9], sum[15], 4)
	enc(sum[4], sum[10], sum[5], 4)
	enc(0, 0, sum[11], 2)
	return out.String()
}

// checkPassword is rpcd's test: a "$1$salt$hash" entry is compared through
// crypt; anything else starting with "$" (e.g. "$p$user", a reference to
// /etc/shadow) is not emulated and refuses; a plain entry is compared as is.
func checkPassword(stored, given string) bool {
	switch {
	case strings.HasPrefix(stored, "$1$"):
		want := md5Crypt(given, stored[3:])
		return subtle.ConstantTimeCompare([]byte(want), []byte(stored)) == 1
	case strings.HasPrefix(stored, "$"):
		return false
	default:
		return subtle.ConstantTimeCompare([]byte(stored), []byte(given)) == 1
	}
}
