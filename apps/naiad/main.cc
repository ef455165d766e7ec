// The naiad multi-call binary: every subcommand lives in a component library (see
// src/cli/command.h); this file only dispatches.
#include "cli/command.h"

int main(int argc, char** argv) { return naiad::cli::Main(argc, argv); }
