//! Command-line entry points: `keywarden` subcommands and the `kubectl-keywarden` plugin.
