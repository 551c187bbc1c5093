/* Windows build of the cmocka suite: see lwt_posix.h. */
#include <lwt_posix.h>
