/*
 * bcryptprimitives_stub.c - a stand-in bcryptprimitives.dll for Wine 8.
 *
 * Rust's standard library (1.78+) on Windows takes its random bytes from
 * ProcessPrng in bcryptprimitives.dll, which Wine 8 does not ship. This
 * stub exports ProcessPrng on top of RtlGenRandom (advapi32's
 * SystemFunction036), which Wine has. Only for running the stand-in DLL
 * under Wine in tests; real Windows 10+ has the real DLL.
 *
 * Build: x86_64-w64-mingw32-gcc -shared -Wall -Werror -o bcryptprimitives.dll
 *        bcryptprimitives_stub.c -ladvapi32
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, n))
            return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
