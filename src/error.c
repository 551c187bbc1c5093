/* error.c - the error table (LW_ERRNO_MAP in lastword.h) and close-reason names. */
#include "internal.h"

const char *lw_strerror(int err) {
  switch (err) {
  case 0:
    return "success";
  case LW_ABOVE_HIGH_WATER:
    return "queued, and the write queue is at or above the high-water mark (not an error)";
#define LW__ERR_MSG(name, val, msg)                                                            \
  case LW_##name:                                                                              \
    return msg;
    LW_ERRNO_MAP(LW__ERR_MSG)
#undef LW__ERR_MSG
  default:
    return "unknown error";
  }
}

const char *lw_err_name(int err) {
  switch (err) {
  case 0:
    return "OK";
  case LW_ABOVE_HIGH_WATER:
    return "ABOVE_HIGH_WATER";
#define LW__ERR_NAME(name, val, msg)                                                           \
  case LW_##name:                                                                              \
    return #name;
    LW_ERRNO_MAP(LW__ERR_NAME)
#undef LW__ERR_NAME
  default:
    return "EUNKNOWN";
  }
}

const char *lw_reason_name(lw_close_reason r) {
  static const char *const names[] = {
#define LW__REASON_STR(name, str) str,
      LW_REASON_MAP(LW__REASON_STR)
#undef LW__REASON_STR
  };
  if ((unsigned)r >= (unsigned)LW_REASON__COUNT)
    return "unknown";
  return names[r];
}
