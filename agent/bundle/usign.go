package bundle

// OpenWrt's usign and OpenBSD's signify share one format for ed25519 keys
// and signatures: a text file of two lines,
//
//	untrusted comment: <anything>
//	<base64 of the binary blob>
//
// where the blob is
//
//	public key:  "Ed" | key number (8 bytes) | ed25519 public key (32)
//	signature:   "Ed" | key number (8 bytes) | ed25519 signature (64)
//	secret key:  "Ed" | "BK" | KDF rounds (4, big endian) | salt (16) |
//	             checksum (8) | key number (8) | ed25519 private key (64)
//
// The key number is random, chosen at key generation; a signature carries
// the number of the key that made it, so a verifier picks the key by number
// and says "signed by key X, which is not trusted" instead of a bare
// "bad signature". usign prints the key number as 16 hex digits (its
// "fingerprint") and OpenWrt names key files after it (/etc/opkg/keys/).
// The signature covers the message bytes exactly (signify -S -m FILE,
// usign -S -m FILE).
//
// Secret keys: famguard reads only unencrypted ones (signify -n, usign's
// default: KDF rounds 0); an encrypted key is refused with a hint, since a
// router-side binary has no business asking for passphrases, and operators
// with encrypted keys sign with signify itself (OPERATORS.md shows both).

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

const (
	pkAlg  = "Ed"
	kdfAlg = "BK"
	// maxKeyFile bounds what is read of a key or signature file.
	maxKeyFile = 4096
)

// KeyID is a key number, as usign prints it (16 hex digits).
type KeyID [8]byte

func (k KeyID) String() string { return hex.EncodeToString(k[:]) }

// PublicKey is a trusted key.
type PublicKey struct {
	ID      KeyID
	Key     ed25519.PublicKey
	Comment string
}

// Signature is a detached signature.
type Signature struct {
	KeyID   KeyID
	Sig     []byte
	Comment string
}

// SecretKey is an unencrypted signing key.
type SecretKey struct {
	ID  KeyID
	Key ed25519.PrivateKey
}

// decodeFile splits a usign/signify file into its comment and blob. It
// accepts a missing trailing newline and CRLF, and rejects anything else:
// a blob must be one base64 line right after the comment line.
func decodeFile(what string, data []byte, wantLen int) (comment string, blob []byte, err error) {
	if len(data) > maxKeyFile {
		return "", nil, fmt.Errorf("%s: %d bytes; a %s file is 2 short lines", what, len(data), what)
	}
	text := strings.ReplaceAll(string(data), "\r\n", "\n")
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) < 2 {
		return "", nil, fmt.Errorf("%s: expected 2 lines (\"untrusted comment: ...\" and the base64 data), got %d", what, len(lines))
	}
	c, ok := strings.CutPrefix(lines[0], "untrusted comment: ")
	if !ok {
		return "", nil, fmt.Errorf("%s: the first line must start with \"untrusted comment: \"", what)
	}
	blob, err = base64.StdEncoding.DecodeString(strings.TrimSpace(lines[1]))
	if err != nil {
		return "", nil, fmt.Errorf("%s: the second line is not base64: %v", what, err)
	}
	if len(blob) != wantLen {
		return "", nil, fmt.Errorf("%s: %d bytes of data, want %d (is this the right kind of file?)", what, len(blob), wantLen)
	}
	if string(blob[:2]) != pkAlg {
		return "", nil, fmt.Errorf("%s: algorithm %q, want %q (ed25519)", what, blob[:2], pkAlg)
	}
	return c, blob, nil
}

// ParsePublicKey reads a usign or signify public key file.
func ParsePublicKey(data []byte) (PublicKey, error) {
	c, blob, err := decodeFile("public key", data, 2+8+ed25519.PublicKeySize)
	if err != nil {
		return PublicKey{}, err
	}
	var k PublicKey
	copy(k.ID[:], blob[2:10])
	k.Key = ed25519.PublicKey(append([]byte(nil), blob[10:]...))
	k.Comment = c
	return k, nil
}

// ParseSignature reads a usign or signify signature file.
func ParseSignature(data []byte) (Signature, error) {
	c, blob, err := decodeFile("signature", data, 2+8+ed25519.SignatureSize)
	if err != nil {
		return Signature{}, err
	}
	var s Signature
	copy(s.KeyID[:], blob[2:10])
	s.Sig = append([]byte(nil), blob[10:]...)
	s.Comment = c
	return s, nil
}

// ParseSecretKey reads an unencrypted usign or signify secret key file.
func ParseSecretKey(data []byte) (SecretKey, error) {
	_, blob, err := decodeFile("secret key", data, 2+2+4+16+8+8+ed25519.PrivateKeySize)
	if err != nil {
		return SecretKey{}, err
	}
	if string(blob[2:4]) != kdfAlg {
		return SecretKey{}, fmt.Errorf("secret key: KDF %q, want %q", blob[2:4], kdfAlg)
	}
	if rounds := binary.BigEndian.Uint32(blob[4:8]); rounds != 0 {
		return SecretKey{}, errors.New("secret key: it is protected by a passphrase; famguard-bundle reads only unencrypted keys (signify -G -n, usign -G): sign the manifest with `signify -S` instead (see OPERATORS.md)")
	}
	checksum := blob[24:32]
	var k SecretKey
	copy(k.ID[:], blob[32:40])
	priv := blob[40:]
	sum := sha512.Sum512(priv)
	if !bytes.Equal(sum[:8], checksum) {
		return SecretKey{}, errors.New("secret key: checksum mismatch (corrupt key file)")
	}
	k.Key = ed25519.PrivateKey(append([]byte(nil), priv...))
	return k, nil
}

// Verify checks sig over msg with the key of the same number among keys.
// Errors say which: no trusted key with that number, or a bad signature.
func Verify(keys []PublicKey, sig Signature, msg []byte) (PublicKey, error) {
	for _, k := range keys {
		if k.ID != sig.KeyID {
			continue
		}
		if !ed25519.Verify(k.Key, msg, sig.Sig) {
			return k, fmt.Errorf("bad signature: the manifest does not match its signature by key %s (altered in transit, or signed over other bytes)", k.ID)
		}
		return k, nil
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID.String()
	}
	if len(ids) == 0 {
		return PublicKey{}, fmt.Errorf("unknown key: signed with key %s, and no key is trusted (put the operator's public key in the keys directory)", sig.KeyID)
	}
	return PublicKey{}, fmt.Errorf("unknown key: signed with key %s, which is not trusted (trusted: %s)", sig.KeyID, strings.Join(ids, ", "))
}

// Sign signs msg; the signature file's comment names the key, like usign.
func (k SecretKey) Sign(msg []byte) []byte {
	blob := append([]byte(pkAlg), k.ID[:]...)
	blob = append(blob, ed25519.Sign(k.Key, msg)...)
	return encodeFile("signed by key "+k.ID.String(), blob)
}

// GenerateKey makes a new unencrypted key pair in usign/signify format.
func GenerateKey(comment string) (secret, public []byte, id KeyID, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, id, err
	}
	if _, err := rand.Read(id[:]); err != nil {
		return nil, nil, id, err
	}
	sum := sha512.Sum512(priv)
	sk := append([]byte(pkAlg+kdfAlg), 0, 0, 0, 0) // KDF rounds 0: unencrypted
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, nil, id, err
	}
	sk = append(sk, salt...)
	sk = append(sk, sum[:8]...)
	sk = append(sk, id[:]...)
	sk = append(sk, priv...)
	pk := append(append([]byte(pkAlg), id[:]...), pub...)
	return encodeFile(comment+" secret key", sk), encodeFile(comment+" public key", pk), id, nil
}

func encodeFile(comment string, blob []byte) []byte {
	return []byte("untrusted comment: " + comment + "\n" + base64.StdEncoding.EncodeToString(blob) + "\n")
}
