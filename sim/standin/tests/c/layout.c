/* Compile-time layout checks of vdisim_vdi.h (C form). */
#include "vdisim_vdi.h"

#ifdef __cplusplus
#define STATIC_ASSERT static_assert
#define ALIGNOF alignof
#else
#define STATIC_ASSERT _Static_assert
#define ALIGNOF _Alignof
#endif

STATIC_ASSERT(sizeof(VDConfig) == 44, "VDConfig is 44 bytes");
STATIC_ASSERT(ALIGNOF(VDConfig) == 4, "VDConfig is 4-aligned");
STATIC_ASSERT(offsetof(VDConfig, serverTimeOut) == 24, "serverTimeOut at 24");
STATIC_ASSERT(offsetof(VDConfig, bufferAreaSize) == 40, "bufferAreaSize at 40");
STATIC_ASSERT(sizeof(VDC_Command) == 24, "VDC_Command is 24 bytes");
STATIC_ASSERT(offsetof(VDC_Command, size) == 4, "size at 4");
STATIC_ASSERT(offsetof(VDC_Command, position) == 8, "position at 8");
STATIC_ASSERT(offsetof(VDC_Command, buffer) == 16, "buffer at 16");
#if !defined(__cplusplus) || defined(CINTERFACE)
STATIC_ASSERT(sizeof(IClientVirtualDeviceSet2Vtbl) == 13 * sizeof(void *), "13 slots");
STATIC_ASSERT(sizeof(IClientVirtualDeviceVtbl) == 5 * sizeof(void *), "5 slots");
STATIC_ASSERT(offsetof(IClientVirtualDeviceSet2Vtbl, CreateEx) == 11 * sizeof(void *), "slot 11");
STATIC_ASSERT(offsetof(IClientVirtualDeviceVtbl, CompleteCommand) == 4 * sizeof(void *),
               "slot 4");
#endif
STATIC_ASSERT(sizeof(GUID) == 16, "GUID is 16 bytes");

#if defined(__cplusplus) && !defined(CINTERFACE) && !defined(_WIN32)
STATIC_ASSERT(sizeof(ClientVirtualDeviceSet) == 8, "one pointer");
STATIC_ASSERT(sizeof(ClientVirtualDevice) == 8, "one pointer");
#endif

int vdisim_layout_ok(void) { return 1; }
