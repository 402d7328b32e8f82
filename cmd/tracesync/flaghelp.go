package main

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// helpNamesEnv adds to the help of every flag of cmd and its subcommands
// the variable applyEnv reads it from, so --help tells how to set it in a
// service's environment file. Flags read only from the command line
// (commandLineOnly) are left as they are.
func helpNamesEnv(cmd *cobra.Command) {
	note := func(f *pflag.Flag) {
		name := envName(f.Name)
		if commandLineOnly[f.Name] || strings.Contains(f.Usage, name) {
			return
		}
		if strings.Contains(f.Usage, "(env ") { // names an alias already: add ours first
			f.Usage = strings.Replace(f.Usage, "(env ", "(env "+name+" or ", 1)
			return
		}
		f.Usage += " (env " + name + ")"
	}
	cmd.LocalFlags().VisitAll(note)
	cmd.PersistentFlags().VisitAll(note)
	for _, sub := range cmd.Commands() {
		helpNamesEnv(sub)
	}
}
