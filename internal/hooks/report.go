package hooks

import (
	"context"
	"fmt"

	"github.com/sluicepg/sluice/plugin"
)

// HasShow reports whether the plugin answers SHOW <its name> in the admin console.
func (in *Instance) HasShow() bool { return in.shower != nil }

// Show returns the plugin's rows for SHOW <its name>, with Timeout as the deadline of ctx. A
// panic or an error is returned as an error naming the plugin; a nil Rows is no rows.
func (in *Instance) Show(ctx context.Context) (*plugin.Rows, error) {
	if in.shower == nil {
		return nil, fmt.Errorf("plugin %q has nothing to show", in.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	var rows *plugin.Rows
	err := safeCall(in, func() error {
		var err error
		rows, err = in.shower.Show(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("plugin %q: show: %w", in.Name, err)
	}
	if rows == nil {
		rows = &plugin.Rows{}
	}
	for i, r := range rows.Rows {
		if len(r) != len(rows.Columns) {
			return nil, fmt.Errorf("plugin %q: show: row %d has %d values for %d columns", in.Name, i, len(r), len(rows.Columns))
		}
	}
	return rows, nil
}

// Collect returns the plugin's metrics (none when it exports none), with Timeout as the
// deadline of ctx. A panic is logged and counted in the instance's errors; the scrape goes on
// without the plugin's metrics.
func (in *Instance) Collect(ctx context.Context) []plugin.Metric {
	if in.collector == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	var ms []plugin.Metric
	_ = safeCall(in, func() error { ms = in.collector.Collect(ctx); return nil })
	return ms
}
