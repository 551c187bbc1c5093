/* Windows build of the lastword tool: see tools/win/lw_win.h. */
#include <lw_win.h>
