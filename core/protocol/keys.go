package protocol

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Key files, in the directory `roster keygen` writes (by default
// <data_dir>/keys). The orchestrator needs all three; an agent's machine
// gets only OrderPubFile and FleetKeyFile.
const (
	OrderKeyFile = "order.key" // the orchestrator's Ed25519 private key, PKCS#8 PEM, mode 0600
	OrderPubFile = "order.pub" // its public key, PKIX PEM, mode 0644: it is not a secret
	FleetKeyFile = "fleet.key" // the shared fleet key for reports, PEM, mode 0600
)

// FleetKeySize is the size of a generated fleet key; shorter keys are
// refused.
const FleetKeySize = 32

// kidLen is the length in bytes of a key id: enough to tell keys apart, not
// a security boundary (the signature is).
const kidLen = 8

const fleetPEMType = "ROSTER FLEET KEY"

// Keys are what a codec holds. The orchestrator holds OrderPrivate; agents
// hold only OrderPublic. Both hold FleetKey.
type Keys struct {
	OrderPrivate ed25519.PrivateKey
	OrderPublic  ed25519.PublicKey
	FleetKey     []byte
}

// GenerateKeys makes a new order key pair and a new fleet key.
func GenerateKeys() (Keys, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Keys{}, fmt.Errorf("protocol: generate order key: %w", err)
	}
	fleet := make([]byte, FleetKeySize)
	if _, err := rand.Read(fleet); err != nil {
		return Keys{}, fmt.Errorf("protocol: generate fleet key: %w", err)
	}
	return Keys{OrderPrivate: priv, OrderPublic: pub, FleetKey: fleet}, nil
}

// Agent returns the keys an agent's machine gets: without the order private
// key.
func (k Keys) Agent() Keys {
	pub := k.OrderPublic
	if pub == nil && len(k.OrderPrivate) == ed25519.PrivateKeySize {
		pub = k.OrderPrivate.Public().(ed25519.PublicKey)
	}
	return Keys{OrderPublic: pub, FleetKey: k.FleetKey}
}

// OrderKeyID returns the id under which orders signed with this key pair
// travel: the first 8 bytes of the SHA-256 of the public key, in hex.
func (k Keys) OrderKeyID() string {
	id := orderKeyID(k.Agent().OrderPublic)
	return hex.EncodeToString(id[:])
}

// FleetKeyID returns the id under which reports authenticated with the fleet
// key travel. It is derived from the key by a hash with its own label, so it
// gives nothing away about the key.
func (k Keys) FleetKeyID() string {
	id := fleetKeyID(k.FleetKey)
	return hex.EncodeToString(id[:])
}

func orderKeyID(pub ed25519.PublicKey) (id [kidLen]byte) {
	sum := sha256.Sum256(pub)
	copy(id[:], sum[:])
	return id
}

func fleetKeyID(key []byte) (id [kidLen]byte) {
	h := sha256.New()
	h.Write([]byte("roster fleet key id\x00"))
	h.Write(key)
	copy(id[:], h.Sum(nil))
	return id
}

// normalize checks the keys and fills in the public key from the private
// one when it is missing.
func (k Keys) normalize() (Keys, error) {
	if k.OrderPrivate != nil {
		if len(k.OrderPrivate) != ed25519.PrivateKeySize {
			return Keys{}, errors.New("protocol: order private key is not an Ed25519 private key")
		}
		pub := k.OrderPrivate.Public().(ed25519.PublicKey)
		if k.OrderPublic == nil {
			k.OrderPublic = pub
		} else if subtle.ConstantTimeCompare(pub, k.OrderPublic) != 1 {
			return Keys{}, errors.New("protocol: order public key does not belong to the order private key")
		}
	}
	if len(k.OrderPublic) != ed25519.PublicKeySize {
		return Keys{}, errors.New("protocol: no Ed25519 order public key")
	}
	if len(k.FleetKey) < FleetKeySize {
		return Keys{}, fmt.Errorf("protocol: fleet key must be at least %d bytes", FleetKeySize)
	}
	return k, nil
}

// WriteOptions tune WriteKeysWith.
type WriteOptions struct {
	// Force replaces existing key files; without it any existing file is
	// an error (wrapping fs.ErrExist) and nothing is written.
	Force bool
	// AgentOnly writes only order.pub and fleet.key: what an agent's
	// machine gets.
	AgentOnly bool
}

// WriteKeys writes order.key (0600), order.pub (0644) and fleet.key (0600)
// into dir, creating it with mode 0700 when missing. It refuses to replace
// existing key files.
func WriteKeys(dir string, k Keys) error { return WriteKeysWith(dir, k, WriteOptions{}) }

// WriteKeysWith writes the key files as WriteKeys does, with options.
// Each file is written to a temporary file first and then linked (or, with
// Force, renamed) into place, so a crash never leaves half a key.
func WriteKeysWith(dir string, k Keys, o WriteOptions) error {
	if o.AgentOnly {
		k = k.Agent()
	} else if k.OrderPrivate == nil {
		return errors.New("protocol: write keys: no order private key (use AgentOnly for an agent's keys)")
	}
	k, err := k.normalize()
	if err != nil {
		return err
	}
	type file struct {
		name string
		mode fs.FileMode
		data []byte
	}
	pubDER, err := x509.MarshalPKIXPublicKey(k.OrderPublic)
	if err != nil {
		return fmt.Errorf("protocol: encode order public key: %w", err)
	}
	files := []file{
		{OrderPubFile, 0o644, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})},
		{FleetKeyFile, 0o600, pem.EncodeToMemory(&pem.Block{Type: fleetPEMType, Bytes: k.FleetKey})},
	}
	if !o.AgentOnly {
		der, err := x509.MarshalPKCS8PrivateKey(k.OrderPrivate)
		if err != nil {
			return fmt.Errorf("protocol: encode order private key: %w", err)
		}
		files = append([]file{{OrderKeyFile, 0o600, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})}}, files...)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("protocol: key directory: %w", err)
	}
	if !o.Force {
		var existing []string
		for _, f := range files {
			if _, err := os.Lstat(filepath.Join(dir, f.name)); err == nil {
				existing = append(existing, filepath.Join(dir, f.name))
			}
		}
		if len(existing) > 0 {
			return fmt.Errorf("protocol: refusing to overwrite %s: %w", strings.Join(existing, ", "), fs.ErrExist)
		}
	}
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data, f.mode, o.Force); err != nil {
			return err
		}
	}
	return nil
}

func writeFileAtomic(path string, data []byte, mode fs.FileMode, replace bool) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("protocol: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file 0600, so a secret is never readable by
	// others, not even for a moment; Chmod sets the mode regardless of
	// the umask.
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("protocol: write %s: %w", path, err)
	}
	if replace {
		err = os.Rename(tmp.Name(), path)
	} else {
		// A link fails when the name exists: no check-then-write race
		// with a second keygen.
		err = os.Link(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("protocol: write %s: %w", path, err)
	}
	return nil
}

// LoadOrchestratorKeys reads order.key, order.pub and fleet.key from dir.
// It refuses a secret file that its group or others can read, and an
// order.pub that does not belong to order.key.
func LoadOrchestratorKeys(dir string) (Keys, error) {
	k, err := LoadAgentKeys(dir)
	if err != nil {
		return Keys{}, err
	}
	path := filepath.Join(dir, OrderKeyFile)
	der, err := readPEM(path, "PRIVATE KEY", true)
	if err != nil {
		return Keys{}, err
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return Keys{}, fmt.Errorf("protocol: %s: %w", path, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return Keys{}, fmt.Errorf("protocol: %s: not an Ed25519 private key", path)
	}
	k.OrderPrivate = priv
	if k, err = k.normalize(); err != nil {
		return Keys{}, fmt.Errorf("%w (%s, %s)", err, path, filepath.Join(dir, OrderPubFile))
	}
	return k, nil
}

// LoadAgentKeys reads order.pub and fleet.key from dir: what an agent
// holds. It refuses a fleet.key that its group or others can read. An
// order.key in the same directory is ignored (on a single host the
// orchestrator and local agents may share one directory).
func LoadAgentKeys(dir string) (Keys, error) {
	pubPath := filepath.Join(dir, OrderPubFile)
	der, err := readPEM(pubPath, "PUBLIC KEY", false)
	if err != nil {
		return Keys{}, err
	}
	key, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return Keys{}, fmt.Errorf("protocol: %s: %w", pubPath, err)
	}
	pub, ok := key.(ed25519.PublicKey)
	if !ok {
		return Keys{}, fmt.Errorf("protocol: %s: not an Ed25519 public key", pubPath)
	}
	fleetPath := filepath.Join(dir, FleetKeyFile)
	fleet, err := readPEM(fleetPath, fleetPEMType, true)
	if err != nil {
		return Keys{}, err
	}
	if len(fleet) < FleetKeySize {
		return Keys{}, fmt.Errorf("protocol: %s: the fleet key must be at least %d bytes", fleetPath, FleetKeySize)
	}
	return Keys{OrderPublic: pub, FleetKey: fleet}, nil
}

// readPEM reads the one PEM block of the given type in path. For a secret
// it first checks that only the owner can read the file.
func readPEM(path, typ string, secret bool) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("protocol: key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("protocol: key file %s is not a regular file", path)
	}
	if secret && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("protocol: key file %s can be read by group or others (mode %04o): run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("protocol: key file: %w", err)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != typ || len(bytes.TrimSpace(rest)) != 0 || len(block.Headers) != 0 {
		return nil, fmt.Errorf("protocol: key file %s: want exactly one PEM block of type %q", path, typ)
	}
	return block.Bytes, nil
}
