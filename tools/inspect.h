#ifndef LW_INSPECT_H
#define LW_INSPECT_H
/* `lastword inspect --port P`: TCP sockets on a port by state, with warnings. */
int lw_inspect_main(int argc, char **argv);
#endif
