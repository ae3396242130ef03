/* placeholder replaced below */
#include "cli.h"
int cmd_predict(int argc, char **argv) {
    (void)argc;
    (void)argv;
    cli_err("predict: not built yet");
    return 1;
}
