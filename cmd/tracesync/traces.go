package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tracesync/tracesync/client"
)

// newTracesCmd is `tracesync traces`: the SDK's traces resource as a CLI.
func newTracesCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "traces",
		Short: "List, show, delete and upload traces in the Stratix project (no local state)",
		Long: `The Stratix traces API as commands, like the SDK's client.traces: list, get,
delete, sources, and a single-file upload. Nothing here reads or writes the
local store: uploads made with "traces upload" are not tracked by the daemon.

Human-readable tables by default; --json for scripts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newTracesListCmd(g), newTracesGetCmd(g), newTracesDeleteCmd(g), newTracesSourcesCmd(g), newTracesUploadCmd(g))
	return cmd
}

func tracesJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func tracesTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func tracesDeref(s *string) string {
	if s == nil || *s == "" {
		return "-"
	}
	return *s
}

func newTracesListCmd(g *globals) *cobra.Command {
	var opts client.ListOptions
	var all, asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List traces, newest first by default",
		Example: `  tracesync traces list
  tracesync traces list --source batch_traces.jsonl --sort-order asc
  tracesync traces list --all --json > traces.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Page < 1 {
				return usageErrorf("--page %d: pages start at 1", opts.Page)
			}
			if opts.PageSize < 1 || opts.PageSize > 500 {
				return usageErrorf("--page-size %d: use 1 to 500", opts.PageSize)
			}
			if o := opts.SortOrder; o != "" && o != "asc" && o != "desc" {
				return usageErrorf("--sort-order %q: use asc or desc", o)
			}
			ctx := cmd.Context()
			c, err := g.newClient(ctx)
			if err != nil {
				return err
			}
			if all {
				traces := []client.TraceWithEvaluations{}
				for t, err := range c.All(ctx, opts) {
					if err != nil {
						return fmt.Errorf("list traces (after %d): %w", len(traces), err)
					}
					traces = append(traces, t)
				}
				if asJSON {
					return tracesJSON(g.stdout, traces)
				}
				return tracesTable(g.stdout, traces, countOf(len(traces), "trace", "traces"))
			}
			res, err := c.List(ctx, opts)
			if err != nil {
				return fmt.Errorf("list traces: %w", err)
			}
			if asJSON {
				if res.Traces == nil {
					res.Traces = []client.TraceWithEvaluations{}
				}
				return tracesJSON(g.stdout, res)
			}
			footer := fmt.Sprintf("page %d: %d of %s", opts.Page, len(res.Traces), countOf(res.TotalCount, "trace", "traces"))
			if (opts.Page-1)*opts.PageSize+len(res.Traces) < res.TotalCount {
				footer += fmt.Sprintf(" (next: --page %d, or --all)", opts.Page+1)
			}
			return tracesTable(g.stdout, res.Traces, footer)
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Page, "page", 1, "page to show (1-based)")
	f.IntVar(&opts.PageSize, "page-size", 100, "traces per page (1 to 500)")
	f.StringVar(&opts.Source, "source", "", `only traces from this source: a filename, or "upload" for every uploaded trace`)
	f.StringVar(&opts.JudgeID, "judge-id", "", "only traces evaluated by this judge")
	f.StringVar(&opts.Status, "status", "", `only traces whose evaluation has this status (e.g. "pass")`)
	f.StringVar(&opts.TimeRange, "time-range", "", `only traces created in this range (e.g. "7d", "30d")`)
	f.StringVar(&opts.Search, "search", "", "only traces matching this text")
	f.StringVar(&opts.SortBy, "sort-by", "", `sort field (e.g. "created_at")`)
	f.StringVar(&opts.SortOrder, "sort-order", "", "asc or desc")
	f.BoolVar(&all, "all", false, "fetch every page (from --page on)")
	f.BoolVar(&asJSON, "json", false, "print JSON (the API's page object, or with --all an array of traces)")
	return cmd
}

func tracesTable(w io.Writer, traces []client.TraceWithEvaluations, footer string) error {
	if len(traces) == 0 {
		_, err := fmt.Fprintln(w, "no traces")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCREATED\tFILENAME\tEVALUATIONS")
	for _, t := range traces {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", t.ID, tracesTime(t.CreatedAt), tracesDeref(t.Filename), t.EvaluationsCount)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, footer)
	return err
}

func newTracesGetCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Show one trace, with its data",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := g.newClient(ctx)
			if err != nil {
				return err
			}
			t, err := c.Get(ctx, args[0])
			if err != nil {
				var ae *client.APIError
				if errors.As(err, &ae) && ae.StatusCode == 404 {
					return fmt.Errorf("trace %s not found in project %s: %w", args[0], c.Target().ProjectID, err)
				}
				return fmt.Errorf("get trace %s: %w", args[0], err)
			}
			if asJSON {
				return tracesJSON(g.stdout, t)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "id:\t%s\n", t.ID)
			fmt.Fprintf(tw, "created:\t%s\n", tracesTime(t.CreatedAt))
			fmt.Fprintf(tw, "filename:\t%s\n", tracesDeref(t.Filename))
			fmt.Fprintf(tw, "organization:\t%s\n", t.OrganizationID)
			fmt.Fprintf(tw, "project:\t%s\n", t.ProjectID)
			fmt.Fprintf(tw, "input:\t%s\n", tracesDeref(t.Input))
			fmt.Fprintf(tw, "integration:\t%s\n", tracesDeref(t.IntegrationID))
			if err := tw.Flush(); err != nil {
				return err
			}
			data, err := json.MarshalIndent(t.Data, "  ", "  ")
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(g.stdout, "data:\n  %s\n", data)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the trace as JSON")
	return cmd
}

func newTracesDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID...",
		Short: "Delete traces (a trace already gone counts as deleted)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := g.newClient(ctx)
			if err != nil {
				return err
			}
			var errs []error
			for _, id := range args {
				err := c.Delete(ctx, id)
				switch {
				case err == nil:
					fmt.Fprintf(g.stdout, "deleted %s\n", id)
				case client.Classify(err) == client.ClassNotFound:
					fmt.Fprintf(g.stdout, "deleted %s (it was already gone)\n", id)
				default:
					errs = append(errs, fmt.Errorf("delete %s: %w", id, err))
					if client.Classify(err) == client.ClassAuth || client.Classify(err) == client.ClassCanceled {
						return errors.Join(errs...)
					}
				}
			}
			if len(errs) > 0 {
				return fmt.Errorf("%d of %d deletes failed: %w", len(errs), len(args), errors.Join(errs...))
			}
			return nil
		},
	}
}

func newTracesSourcesCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "sources",
		Short: "List the sources (uploaded filenames) traces came from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := g.newClient(ctx)
			if err != nil {
				return err
			}
			src, err := c.Sources(ctx)
			if err != nil {
				return fmt.Errorf("list sources: %w", err)
			}
			if asJSON {
				return tracesJSON(g.stdout, src)
			}
			if len(src) == 0 {
				_, err := fmt.Fprintln(g.stdout, "no sources")
				return err
			}
			for _, s := range src {
				if _, err := fmt.Fprintln(g.stdout, s); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

// tracesUploadResult is one line of `traces upload --json`.
type tracesUploadResult struct {
	File     string   `json:"file"`
	Filename string   `json:"filename"`
	Bytes    int64    `json:"bytes"`
	TraceIDs []string `json:"trace_ids,omitempty"`
	Error    string   `json:"error,omitempty"`
}

func newTracesUploadCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "upload FILE...",
		Short: "Upload .json/.jsonl files once each, without tracking them (the daemon does that)",
		Long: `Upload each file (presign, PUT, create) and print the ids of the traces it
became. Files over 50 MiB or not named .json / .jsonl are refused before any
request. Nothing is recorded locally: uploading the same file twice makes two
sets of traces. To keep a folder in sync exactly once, use "tracesync run".`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sizes := make([]int64, len(args))
			var bad []string
			for i, path := range args {
				size, err := tracesCheckFile(path)
				if err != nil {
					bad = append(bad, err.Error())
				}
				sizes[i] = size
			}
			if len(bad) > 0 {
				return usageErrorf("nothing uploaded:\n  %s", strings.Join(bad, "\n  "))
			}
			ctx := cmd.Context()
			c, err := g.newClient(ctx)
			if err != nil {
				return err
			}
			var results []tracesUploadResult
			failed := 0
			for i, path := range args {
				r := tracesUploadResult{File: path, Filename: filepath.Base(path), Bytes: sizes[i]}
				ids, err := tracesUploadFile(cmd, c, path, sizes[i])
				if err != nil {
					failed++
					r.Error = err.Error()
					if !asJSON {
						fmt.Fprintf(g.stderr, "%s: %v\n", path, err)
					}
					if cl := client.Classify(err); cl == client.ClassAuth || cl == client.ClassCanceled {
						results = append(results, r)
						break
					}
				} else {
					r.TraceIDs = ids
					if !asJSON {
						fmt.Fprintf(g.stdout, "%s: %s: %s\n", path, countOf(len(ids), "trace", "traces"), strings.Join(ids, " "))
					}
				}
				results = append(results, r)
			}
			if asJSON {
				if err := tracesJSON(g.stdout, results); err != nil {
					return err
				}
			}
			if failed > 0 {
				if asJSON {
					fmt.Fprintf(g.stderr, "tracesync: %d of %d uploads failed\n", failed, len(args))
					return errSilentFailure
				}
				return fmt.Errorf("%d of %d uploads failed", failed, len(args))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print a JSON array of {"file", "filename", "bytes", "trace_ids", "error"}`)
	return cmd
}

// checkUploadFile refuses, before any request, what the API would refuse:
// a name other than .json/.jsonl, a file over 50 MiB, a missing file.
func tracesCheckFile(path string) (int64, error) {
	if _, err := client.ContentType(path); err != nil {
		return 0, fmt.Errorf("%s: only .json and .jsonl files can be uploaded", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, fmt.Errorf("%s: %v", path, errors.Unwrap(err))
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%s: not a regular file", path)
	}
	if fi.Size() > client.MaxFileSize {
		return 0, fmt.Errorf("%s: %d bytes is over the API's 50 MiB limit (%d bytes)", path, fi.Size(), client.MaxFileSize)
	}
	return fi.Size(), nil
}

func tracesUploadFile(cmd *cobra.Command, c *client.Client, path string, size int64) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() != size {
		size = fi.Size()
		if size > client.MaxFileSize {
			return nil, fmt.Errorf("%d bytes: %w", size, client.ErrTooLarge)
		}
	}
	return c.Upload(cmd.Context(), path, f, size)
}
