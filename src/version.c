/* version.c - lw_version(): the version of the library actually running, which for a
 * shared library may differ from the header the program was compiled with. */
#include "internal.h"

#define LW__STR2(x) #x
#define LW__STR(x) LW__STR2(x)

unsigned int lw_version(void) { return LW_VERSION_HEX; }

const char *lw_version_string(void) {
  return LW__STR(LW_VERSION_MAJOR) "." LW__STR(LW_VERSION_MINOR) "." LW__STR(LW_VERSION_PATCH);
}
