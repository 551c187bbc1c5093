# Cross-compiling lastword for 64-bit Windows with Debian's mingw-w64 (gcc-mingw-w64-x86-64).
#   cmake -S . -B build-win -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-mingw64.cmake
# The programs run under Wine (scripts/win-test.sh) or on real Windows.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(LW_MINGW_PREFIX x86_64-w64-mingw32 CACHE STRING "mingw-w64 target triple")
# The posix-threads flavour if installed (needed by nothing here), else the default.
find_program(LW_MINGW_CC NAMES ${LW_MINGW_PREFIX}-gcc-posix ${LW_MINGW_PREFIX}-gcc REQUIRED)
set(CMAKE_C_COMPILER ${LW_MINGW_CC})
find_program(CMAKE_RC_COMPILER NAMES ${LW_MINGW_PREFIX}-windres)
set(CMAKE_FIND_ROOT_PATH /usr/${LW_MINGW_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# Wine runs the test programs from ctest when it is installed.
find_program(LW_WINE NAMES wine wine64)
if(LW_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${LW_WINE})
endif()
# Self-contained binaries: no libwinpthread-1.dll / libgcc DLL to ship next to them
# (_Thread_local pulls in winpthread's TLS emulation with this gcc).
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-static")
