package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"

	"github.com/rosterhq/roster/core/balancer"
	"github.com/rosterhq/roster/core/balancer/dns"
	"github.com/rosterhq/roster/core/balancer/file"
	"github.com/rosterhq/roster/core/balancer/haproxy"
	"github.com/rosterhq/roster/core/config"
)

// The balancer packages register their types with core/balancer from init;
// importing them here is what makes `balancer "haproxy"` and `balancer
// "file"` blocks work in this binary. Their block checks are registered
// here too, so that `roster validate` reports a mistake in a balancer block
// with its range, as it does for everything else, without starting haproxy.
func init() {
	balancer.RegisterValidator(haproxy.Type, func(body hcl.Body) hcl.Diagnostics {
		_, diags := haproxy.DecodeConfig(body)
		return diags
	})
	balancer.RegisterValidator(file.Type, func(body hcl.Body) hcl.Diagnostics {
		_, diags := file.DecodeConfig(body)
		return diags
	})
	balancer.RegisterValidator(dns.Type, func(body hcl.Body) hcl.Diagnostics {
		_, diags := dns.DecodeConfig(body)
		return diags
	})
}

// validateBalancers checks the balancer blocks of every orchestrator config.
func validateBalancers(orchestrators []*config.Orchestrator) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, o := range orchestrators {
		if o == nil {
			continue
		}
		for _, b := range o.Balancers {
			diags = append(diags, balancer.Validate(b)...)
		}
	}
	return diags
}

// balancerStopTimeout bounds how long a stopping balancer (a managed
// haproxy's soft stop) may let its open sessions finish.
const balancerStopTimeout = 10 * time.Second

// stopBalancers stops the balancers that run a process of their own (a
// managed haproxy), for `roster up` when it exits: everything it started
// goes. `roster orchestrator` never calls it, so that traffic keeps flowing
// across its restarts.
func stopBalancers(ctx context.Context, bals map[string]balancer.Balancer, logger hclog.Logger) error {
	var errs []error
	for _, name := range sortedNames(bals) {
		s, ok := bals[name].(balancer.Stopper)
		if !ok {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, balancerStopTimeout)
		err := s.Stop(sctx)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("stopping balancer %q: %w", name, err))
			continue
		}
		logger.Info("balancer stopped", "balancer", name)
	}
	return errors.Join(errs...)
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
