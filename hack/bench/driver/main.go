// Command driver measures cached `latchkey get-token` against baseline
// programs for `make bench` and prints a table of ratios and the targets of
// the Performance issue (see README "Performance").
//
//	driver -cmd 'latchkey=BIN get-token ...' -cmd 'floor=FLOOR FILE' [-cmd 'NAME=CMD ...']... \
//	       [-hyperfine FILE] [-strict]
//
// The first -cmd is the subject, the second the floor the targets are ratios
// to; further ones are reported for the record. A command line is split on
// white space, so paths must not contain any; its first word is the binary
// whose size is reported. The driver measures:
//
//   - the median wall time of one call: read from a hyperfine --export-json
//     FILE whose commands carry the same names (hyperfine -n; it runs each
//     command's runs back to back), and measured by the driver itself with
//     the commands interleaved, as a cross-check against drift on a busy
//     machine;
//   - peak RSS: the median over runs of GNU time's %M (maximum resident set
//     size). The driver cannot read it from its own children's rusage: Go
//     starts children with vfork, and Linux then charges the parent's RSS to
//     the child's ru_maxrss;
//   - the binary size;
//   - the total wall time of -parallel simultaneous calls, median over -reps
//     repetitions, commands interleaved.
//
// Every call must exit 0 (a cached call that tried the network would fail:
// make bench stops the provider first), and a first call of each command
// must print an ExecCredential with a token.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Targets of the Performance issue, as ratios of the subject to the floor.
const (
	wallTarget     = 1.15
	rssTarget      = 1.30
	parallelTarget = 1.15
	sizeTarget     = 12_000_000 // bytes, absolute
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// command is one measured program.
type command struct {
	name string
	argv []string
}

type config struct {
	cmds      []command
	hyperfine string
	gnuTime   string
	wallRuns  int
	rssRuns   int
	parallel  int
	reps      int
	strict    bool
}

func run(args []string, stdout, stderr io.Writer) int {
	var c config
	fs := flag.NewFlagSet("driver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Func("cmd", "NAME=COMMAND LINE to measure (repeatable; first the subject, then the floor)", func(s string) error {
		name, line, ok := strings.Cut(s, "=")
		argv := strings.Fields(line)
		if !ok || name == "" || len(argv) == 0 {
			return fmt.Errorf("want NAME=COMMAND, got %q", s)
		}
		c.cmds = append(c.cmds, command{name, argv})
		return nil
	})
	fs.StringVar(&c.hyperfine, "hyperfine", "", "hyperfine --export-json file of the same commands, named with -n")
	fs.StringVar(&c.gnuTime, "time", "/usr/bin/time", "GNU time, for peak RSS")
	fs.IntVar(&c.wallRuns, "wall-runs", 200, "interleaved wall-time runs per command")
	fs.IntVar(&c.rssRuns, "rss-runs", 20, "peak RSS runs per command")
	fs.IntVar(&c.parallel, "parallel", 100, "simultaneous calls in the parallel measure")
	fs.IntVar(&c.reps, "reps", 15, "repetitions of the parallel measure")
	fs.BoolVar(&c.strict, "strict", false, "exit 1 when a target is missed")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if len(c.cmds) < 2 {
		fmt.Fprintln(stderr, "driver: want at least two -cmd: the subject and the floor")
		return 2
	}
	if c.wallRuns < 1 || c.rssRuns < 1 || c.parallel < 1 || c.reps < 1 {
		fmt.Fprintln(stderr, "driver: -wall-runs, -rss-runs, -parallel and -reps must be positive")
		return 2
	}
	r, err := measure(&c, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "driver: %v\n", err)
		return 1
	}
	if failed := r.print(stdout, &c); failed && c.strict {
		return 1
	}
	return 0
}

// results are the figures of the commands, indexed like config.cmds.
type results struct {
	hfMedian []time.Duration // nil without -hyperfine
	hfCPU    []time.Duration // user+system, mean
	hfRuns   int
	wall     []time.Duration
	rss      []int64 // KiB
	size     []int64 // bytes
	parallel []time.Duration
}

func measure(c *config, log io.Writer) (*results, error) {
	n := len(c.cmds)
	r := &results{
		wall:     make([]time.Duration, n),
		rss:      make([]int64, n),
		size:     make([]int64, n),
		parallel: make([]time.Duration, n),
	}
	for i, cmd := range c.cmds {
		if err := check(cmd.argv); err != nil {
			return nil, fmt.Errorf("%s: %w", cmd.name, err)
		}
		fi, err := os.Stat(cmd.argv[0])
		if err != nil {
			return nil, err
		}
		r.size[i] = fi.Size()
	}
	if c.hyperfine != "" {
		if err := r.readHyperfine(c.hyperfine, c.cmds); err != nil {
			return nil, err
		}
	}

	fmt.Fprintf(log, "driver: %d interleaved runs per command (wall time)\n", c.wallRuns)
	walls, err := interleave(c.cmds, c.wallRuns, func(argv []string) (time.Duration, error) {
		start := time.Now()
		err := exec.Command(argv[0], argv[1:]...).Run()
		return time.Since(start), err
	})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "driver: %d runs per command under %s (peak RSS)\n", c.rssRuns, c.gnuTime)
	rss, err := interleave(c.cmds, c.rssRuns, func(argv []string) (int64, error) { return maxRSS(c.gnuTime, argv) })
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "driver: %d x %d simultaneous calls per command\n", c.reps, c.parallel)
	par, err := interleave(c.cmds, c.reps, func(argv []string) (time.Duration, error) { return parallel(argv, c.parallel) })
	if err != nil {
		return nil, err
	}
	for i := range c.cmds {
		r.wall[i] = median(walls[i])
		r.rss[i] = median(rss[i])
		r.parallel[i] = median(par[i])
	}
	return r, nil
}

// interleave runs f on every command, runs times each, rotating the order
// each round so that drift on a busy machine hits all commands alike.
func interleave[T any](cmds []command, runs int, f func(argv []string) (T, error)) ([][]T, error) {
	out := make([][]T, len(cmds))
	for k := range runs {
		for j := range cmds {
			i := (j + k) % len(cmds)
			v, err := f(cmds[i].argv)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", cmds[i].name, err)
			}
			out[i] = append(out[i], v)
		}
	}
	return out, nil
}

// check runs argv once and makes sure it prints an ExecCredential.
func check(argv []string) error {
	var out, errb bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(errb.String()))
	}
	var ec struct {
		Kind   string `json:"kind"`
		Status struct {
			Token string `json:"token"`
		} `json:"status"`
	}
	if err := json.Unmarshal(out.Bytes(), &ec); err != nil || ec.Kind != "ExecCredential" || ec.Status.Token == "" {
		return fmt.Errorf("%s printed no ExecCredential with a token", argv[0])
	}
	return nil
}

// maxRSS runs argv under GNU time and returns its peak RSS in KiB.
func maxRSS(gnuTime string, argv []string) (int64, error) {
	f, err := os.CreateTemp("", "latchkey-bench-rss-")
	if err != nil {
		return 0, err
	}
	name := f.Name()
	f.Close()
	defer os.Remove(name)
	cmd := exec.Command(gnuTime, append([]string{"-f", "%M", "-o", name}, argv...)...)
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%s %s: %w", gnuTime, argv[0], err)
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	kib, err := strconv.ParseInt(s[strings.LastIndexByte(s, '\n')+1:], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s printed %q, not a size in KiB (is it GNU time?)", gnuTime, s)
	}
	return kib, nil
}

// parallel starts n calls of argv at once and returns the time until the
// last one exits.
func parallel(argv []string, n int) (time.Duration, error) {
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := time.Now()
	for i := range n {
		wg.Go(func() { errs[i] = exec.Command(argv[0], argv[1:]...).Run() })
	}
	wg.Wait()
	return time.Since(start), errors.Join(errs...)
}

// hyperfineResult is one command's entry in hyperfine's --export-json file.
// Times are in seconds; User and System are means.
type hyperfineResult struct {
	Command   string    `json:"command"`
	Median    float64   `json:"median"`
	User      float64   `json:"user"`
	System    float64   `json:"system"`
	Times     []float64 `json:"times"`
	ExitCodes []*int    `json:"exit_codes"`
}

func (r *results) readHyperfine(path string, cmds []command) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc struct {
		Results []hyperfineResult `json:"results"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	for _, cmd := range cmds {
		j := slices.IndexFunc(doc.Results, func(x hyperfineResult) bool { return x.Command == cmd.name })
		if j < 0 {
			return fmt.Errorf("%s has no command named %s (use hyperfine -n)", path, cmd.name)
		}
		res := doc.Results[j]
		for _, code := range res.ExitCodes {
			if code == nil || *code != 0 {
				return fmt.Errorf("%s: a %s run did not exit 0", path, cmd.name)
			}
		}
		r.hfMedian = append(r.hfMedian, seconds(res.Median))
		r.hfCPU = append(r.hfCPU, seconds(res.User+res.System))
		r.hfRuns = len(res.Times)
	}
	return nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func median[T int64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// print writes the table and reports whether a target was missed. Columns:
// each command's figure, the subject's ratio to each other command, the
// target (on the ratio to the floor) and PASS or FAIL.
func (r *results) print(w io.Writer, c *config) (failed bool) {
	head := []string{"measure"}
	for _, cmd := range c.cmds {
		head = append(head, cmd.name)
	}
	for _, cmd := range c.cmds[1:] {
		head = append(head, c.cmds[0].name+" / "+cmd.name)
	}
	head = append(head, "target", "result")
	fmt.Fprintf(w, "| %s |\n", strings.Join(head, " | "))
	fmt.Fprintf(w, "|---|%s---|---|\n", strings.Repeat("--:|", 2*len(c.cmds)-1))

	// row prints one measure; a nil pass means the measure has no target
	// to check.
	row := func(measure string, vals []float64, unit func(float64) string, target string, pass func(ratio float64) bool) {
		cells := []string{measure}
		for _, v := range vals {
			cells = append(cells, unit(v))
		}
		for _, v := range vals[1:] {
			cells = append(cells, fmt.Sprintf("%.2fx", vals[0]/v))
		}
		res := ""
		if pass != nil {
			res = "PASS"
			if !pass(vals[0] / vals[1]) {
				res, failed = "FAIL", true
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", strings.Join(cells, " | "), target, res)
	}
	durations := func(ds []time.Duration) []float64 {
		out := make([]float64, len(ds))
		for i, d := range ds {
			out[i] = float64(d)
		}
		return out
	}
	ms := func(v float64) string { return fmt.Sprintf("%.2f ms", v/float64(time.Millisecond)) }
	ratio := func(max float64) func(float64) bool { return func(x float64) bool { return x <= max } }
	le := func(x float64) string { return fmt.Sprintf("<= %.2fx", x) }

	if r.hfMedian != nil {
		row(fmt.Sprintf("cached call, median wall (hyperfine, %d runs)", r.hfRuns), durations(r.hfMedian), ms, le(wallTarget), ratio(wallTarget))
	}
	if r.hfMedian != nil {
		row(fmt.Sprintf("cached call, median wall (interleaved, %d runs)", c.wallRuns), durations(r.wall), ms, "(cross-check)", nil)
	} else {
		row(fmt.Sprintf("cached call, median wall (interleaved, %d runs)", c.wallRuns), durations(r.wall), ms, le(wallTarget), ratio(wallTarget))
	}
	if r.hfCPU != nil {
		row("cached call, mean CPU user+sys (hyperfine)", durations(r.hfCPU), ms, "", nil)
	}
	rss := make([]float64, len(r.rss))
	for i, k := range r.rss {
		rss[i] = float64(k)
	}
	row(fmt.Sprintf("cached call, peak RSS (median of %d)", c.rssRuns), rss,
		func(v float64) string { return fmt.Sprintf("%.1f MiB", v/1024) }, le(rssTarget), ratio(rssTarget))
	size := make([]float64, len(r.size))
	for i, b := range r.size {
		size[i] = float64(b)
	}
	row("binary size", size, func(v float64) string { return fmt.Sprintf("%.1f MB", v/1e6) },
		fmt.Sprintf("<= %d MB", sizeTarget/1_000_000), func(float64) bool { return r.size[0] <= sizeTarget })
	row(fmt.Sprintf("%d parallel cached calls, total wall (median of %d)", c.parallel, c.reps), durations(r.parallel), ms,
		le(parallelTarget), ratio(parallelTarget))
	return failed
}
