package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// completionCommand is a function, not a variable like the other commands,
// because it lists the commands itself.
func completionCommand() command {
	return command{
		name:    "completion",
		summary: "print a shell completion script (bash, zsh or fish)",
		usage:   "completion --shell=bash|zsh|fish",
		help: `
Examples:
  source <(latchkey completion --shell=bash)
  latchkey completion --shell=zsh > "${fpath[1]}/_latchkey"
  latchkey completion --shell=fish > ~/.config/fish/completions/latchkey.fish
`,
		flags: func(c *cli, fs *flag.FlagSet) func(context.Context) int {
			shell := fs.String("shell", "", "bash, zsh or fish")
			return func(context.Context) int {
				if err := writeCompletion(c.stdout, *shell); err != nil {
					fmt.Fprintf(c.stderr, "latchkey completion: %v\n", err)
					return 2
				}
				return 0
			}
		},
	}
}

// commandFlags returns each command's flag names, from the same
// definitions the commands parse with, so completion cannot drift.
func commandFlags() map[string][]string {
	out := map[string][]string{}
	for _, cmd := range commands() {
		fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
		cmd.flags(&cli{}, fs)
		var names []string
		listedFlags(fs).VisitAll(func(f *flag.Flag) { names = append(names, "--"+f.Name) })
		out[cmd.name] = names
	}
	return out
}

func writeCompletion(w io.Writer, shell string) error {
	flags := commandFlags()
	var names []string
	for _, cmd := range commands() {
		names = append(names, cmd.name)
	}
	switch shell {
	case "bash":
		fmt.Fprintf(w, "# bash completion for latchkey\n_latchkey() {\n  local cur=${COMP_WORDS[COMP_CWORD]}\n  if [ \"$COMP_CWORD\" -eq 1 ]; then\n    COMPREPLY=($(compgen -W %q -- \"$cur\")); return\n  fi\n  case ${COMP_WORDS[1]} in\n", strings.Join(names, " "))
		for _, n := range names {
			fmt.Fprintf(w, "    %s) COMPREPLY=($(compgen -W %q -- \"$cur\"));;\n", n, strings.Join(flags[n], " "))
		}
		fmt.Fprint(w, "  esac\n}\ncomplete -o default -F _latchkey latchkey\n")
	case "zsh":
		fmt.Fprint(w, "#compdef latchkey\n_latchkey() {\n  if (( CURRENT == 2 )); then\n    compadd -- "+strings.Join(names, " ")+"\n    return\n  fi\n  case $words[2] in\n")
		for _, n := range names {
			fmt.Fprintf(w, "    %s) compadd -- %s;;\n", n, strings.Join(flags[n], " "))
		}
		fmt.Fprint(w, "  esac\n}\ncompdef _latchkey latchkey\n")
	case "fish":
		fmt.Fprint(w, "# fish completion for latchkey\n")
		for _, cmd := range commands() {
			fmt.Fprintf(w, "complete -c latchkey -n '__fish_use_subcommand' -f -a %s -d %s\n", cmd.name, fishQuote(cmd.summary))
		}
		for _, n := range names {
			for _, f := range slices.Sorted(slices.Values(flags[n])) {
				fmt.Fprintf(w, "complete -c latchkey -n '__fish_seen_subcommand_from %s' -l %s\n", n, strings.TrimPrefix(f, "--"))
			}
		}
	default:
		return fmt.Errorf("unknown shell %q (want bash, zsh or fish)", shell)
	}
	return nil
}

func fishQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `\'`) + "'" }
