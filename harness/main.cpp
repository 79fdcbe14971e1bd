#include "harness/cli.h"

int main(int argc, char** argv) { return ditbench::cli_main(argc, argv); }
