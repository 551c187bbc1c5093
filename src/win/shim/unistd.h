/* Windows build only (src/win/shim is on the include path of the library there): the
 * core includes <unistd.h> for close(); compat.h maps close() to lw__win_close. */
#ifndef LW_WIN_SHIM_UNISTD_H
#define LW_WIN_SHIM_UNISTD_H
#include "../compat.h"
#endif
