package house

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/internal/config"
)

// Config is the configuration of a house daemon (house.toml): where it
// listens, the gateways it serves and the ledger it serves them from.
//
//	listen = "0.0.0.0:7400"
//	tls_cert = "/etc/helexa/house.crt"   # optional; HTTP/2 over TLS
//	tls_key = "/etc/helexa/house.key"
//	client_ca = "/etc/helexa/gateways-ca.pem"  # optional: mutual TLS
//
//	[[gateways]]
//	name = "eu-1"
//	token_sha256 = "9f86d0...0f00a08"   # sha256 of the gateway's token
//	accounts = ["acme"]                 # optional: every account when absent
//
//	[grants]
//	share = 0.5
//	ttl = "30s"
//
//	[entitlements]                      # the ledger, as in cortex.toml
//	[entitlements.redis]
//	url = "redis://127.0.0.1:6379/0"
type Config struct {
	// Listen is the address of the protocol, /health and /metrics.
	// Default "127.0.0.1:7400".
	Listen string `toml:"listen"`
	// TLSCert and TLSKey turn TLS on (Go's standard configuration, HTTP/2
	// included); both or neither.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// ClientCA, with TLS, asks every gateway for a certificate signed by
	// one of its CAs (mutual TLS), on top of its token.
	ClientCA string `toml:"client_ca"`
	// Gateways are the gateways served. At least one.
	Gateways []GatewayConfig `toml:"gateways"`
	// Grants is the grant policy.
	Grants GrantsConfig `toml:"grants"`
	// LeaseTTL is the TTL of the leases the house keeps over a ledger
	// without its own (a Local one); 0: DefaultLeaseTTL.
	LeaseTTL entitlements.Duration `toml:"lease_ttl"`
	// Entitlements is the ledger: the [entitlements] table of cortex.toml
	// (keys, [entitlements.local] or [entitlements.redis]), without
	// [entitlements.house].
	Entitlements entitlements.Config `toml:"entitlements"`
}

// GatewayConfig is one [[gateways]] entry.
type GatewayConfig struct {
	Name string `toml:"name"`
	// TokenSHA256 is the hex SHA-256 digest of the gateway's token.
	TokenSHA256 string   `toml:"token_sha256"`
	Accounts    []string `toml:"accounts"`
}

// GrantsConfig is the [grants] table: see WithGrantPolicy.
type GrantsConfig struct {
	Share float64               `toml:"share"`
	TTL   entitlements.Duration `toml:"ttl"`
}

// LoadConfig reads and validates the house configuration at path.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	return ParseConfig(data)
}

// ParseConfig decodes and validates a house configuration, rejecting
// unknown keys.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	if errs := config.Decode(data, &c, config.Options{}); len(errs) > 0 {
		return Config{}, config.Join(errs)
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:7400"
	}
	if _, err := c.Options(); err != nil {
		return Config{}, err
	}
	if err := c.Entitlements.Validate(); err != nil {
		return Config{}, err
	}
	if c.Entitlements.House != nil {
		return Config{}, errors.New("house config: [entitlements.house] makes no sense in a house")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") || (c.ClientCA != "" && c.TLSCert == "") {
		return Config{}, errors.New("house config: tls_cert and tls_key go together, and client_ca needs them")
	}
	return c, nil
}

// Options returns the Handler options of c: its gateways, grant policy
// and lease TTL.
func (c Config) Options() ([]Option, error) {
	if len(c.Gateways) == 0 {
		return nil, errors.New("house config: no [[gateways]]: the house would refuse every call")
	}
	var opts []Option
	for i, g := range c.Gateways {
		d, err := entitlements.ParseDigest(g.TokenSHA256)
		if err != nil || g.Name == "" {
			return nil, fmt.Errorf("house config: gateways[%s]: name and token_sha256 (64 hex digits) are required", strconv.Itoa(i))
		}
		opts = append(opts, WithGateway(Gateway{Name: g.Name, TokenSHA256: d, Accounts: g.Accounts}))
	}
	if c.Grants.Share != 0 || c.Grants.TTL != 0 {
		p := defaultGrantPolicy()
		if c.Grants.Share != 0 {
			p.share = c.Grants.Share
		}
		if c.Grants.TTL != 0 {
			p.ttl = time.Duration(c.Grants.TTL)
		}
		if err := p.validate(); err != nil {
			return nil, err
		}
		opts = append(opts, WithGrantPolicy(p.share, p.ttl))
	}
	if c.LeaseTTL < 0 {
		return nil, errors.New("house config: lease_ttl must not be negative")
	} else if c.LeaseTTL > 0 {
		opts = append(opts, WithLeaseTTL(time.Duration(c.LeaseTTL)))
	}
	return opts, nil
}
