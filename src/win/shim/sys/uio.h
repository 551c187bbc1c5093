/* Windows build only: struct iovec for lw__conn_fill_iov (see ../../compat.h). */
#ifndef LW_WIN_SHIM_SYS_UIO_H
#define LW_WIN_SHIM_SYS_UIO_H
#include "../../compat.h"
#endif
