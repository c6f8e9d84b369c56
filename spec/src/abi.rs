//! Binary-interface facts as data: COM GUIDs and vtable shapes, the Linux
//! `libsqlvdi.so` class symbols, and the Win32 codes the Linux header defines
//! (vdi-abi-and-field-notes.md Part 1; vdi-spec.md §3.7, §6.2).
//!
//! Nothing here calls anything: the stand-in library and the COM backend read
//! these tables to lay out their vtables and export their symbols, and the
//! tests pin every value against the reference.

use crate::codes::Win32;
use serde::{Serialize, Serializer};
use std::fmt;

/// A COM GUID with the in-memory layout of the Windows `GUID` struct.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid {
    /// First 32 bits.
    pub data1: u32,
    /// Next 16 bits.
    pub data2: u16,
    /// Next 16 bits.
    pub data3: u16,
    /// Last 64 bits, as bytes in textual order.
    pub data4: [u8; 8],
}

impl Guid {
    /// A GUID from its four fields.
    pub const fn new(data1: u32, data2: u16, data3: u16, data4: [u8; 8]) -> Guid {
        Guid {
            data1,
            data2,
            data3,
            data4,
        }
    }

    /// A GUID from its 128-bit value read as the textual form without dashes
    /// (`0x40700424_0080_11d2_851f_00c04fc21759`).
    pub const fn from_u128(v: u128) -> Guid {
        let b = v.to_be_bytes();
        Guid {
            data1: (v >> 96) as u32,
            data2: (v >> 80) as u16,
            data3: (v >> 64) as u16,
            data4: [b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]],
        }
    }

    /// The 128-bit value of the textual form (inverse of [`Guid::from_u128`]).
    pub const fn to_u128(self) -> u128 {
        let mut v = ((self.data1 as u128) << 96)
            | ((self.data2 as u128) << 80)
            | ((self.data3 as u128) << 64);
        let mut i = 0;
        while i < 8 {
            v |= (self.data4[i] as u128) << (8 * (7 - i));
            i += 1;
        }
        v
    }

    /// Parses `{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}` (braces optional, hex
    /// digits of either case). Returns `None` for anything else.
    pub fn parse(s: &str) -> Option<Guid> {
        let inner = match (s.strip_prefix('{'), s.strip_suffix('}')) {
            (Some(rest), Some(_)) => rest.strip_suffix('}')?,
            (None, None) => s,
            _ => return None,
        };
        let groups: Vec<&str> = inner.split('-').collect();
        let lens = [8, 4, 4, 4, 12];
        if groups.len() != lens.len() {
            return None;
        }
        let mut hex = String::with_capacity(32);
        for (g, len) in groups.iter().zip(lens) {
            if g.len() != len || !g.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            hex.push_str(g);
        }
        u128::from_str_radix(&hex, 16).ok().map(Guid::from_u128)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.data4;
        write!(
            f,
            "{{{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}}}",
            self.data1, self.data2, self.data3, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Guid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `IID_IUnknown` `{00000000-0000-0000-c000-000000000046}`.
pub const IID_IUNKNOWN: Guid = Guid::from_u128(0x00000000_0000_0000_c000_000000000046);
/// `IID_IClientVirtualDevice` (vdiguid.h).
pub const IID_ICLIENT_VIRTUAL_DEVICE: Guid =
    Guid::from_u128(0x40700424_0080_11d2_851f_00c04fc21759);
/// `IID_IClientVirtualDeviceSet` (vdiguid.h).
pub const IID_ICLIENT_VIRTUAL_DEVICE_SET: Guid =
    Guid::from_u128(0x40700425_0080_11d2_851f_00c04fc21759);
/// `IID_IClientVirtualDeviceSet2` (vdiguid.h).
pub const IID_ICLIENT_VIRTUAL_DEVICE_SET2: Guid =
    Guid::from_u128(0xd0e6eb07_7a62_11d2_8573_00c04fc21759);
/// `IID_IServerVirtualDevice` (vdiguid.h).
pub const IID_ISERVER_VIRTUAL_DEVICE: Guid =
    Guid::from_u128(0xb5e7a131_a7bd_11d1_84c2_00c04fc21759);
/// `IID_IServerVirtualDeviceSet` (vdiguid.h); also the server class id.
pub const IID_ISERVER_VIRTUAL_DEVICE_SET: Guid =
    Guid::from_u128(0xb5e7a132_a7bd_11d1_84c2_00c04fc21759);
/// `IID_IServerVirtualDeviceSet2` (vdiguid.h).
pub const IID_ISERVER_VIRTUAL_DEVICE_SET2: Guid =
    Guid::from_u128(0xaecbd0d6_24c6_11d3_85b7_00c04fc21759);
/// `CLSID_MSSQL_ClientVirtualDeviceSet`: the same GUID as
/// `IID_IClientVirtualDeviceSet`.
pub const CLSID_MSSQL_CLIENT_VIRTUAL_DEVICE_SET: Guid = IID_ICLIENT_VIRTUAL_DEVICE_SET;
/// `CLSID_MSSQL_ServerVirtualDeviceSet`: the same GUID as
/// `IID_IServerVirtualDeviceSet`.
pub const CLSID_MSSQL_SERVER_VIRTUAL_DEVICE_SET: Guid = IID_ISERVER_VIRTUAL_DEVICE_SET;
/// `CLSID_WINFS_ClientVirtualDeviceSet`.
pub const CLSID_WINFS_CLIENT_VIRTUAL_DEVICE_SET: Guid =
    Guid::from_u128(0x50b99b13_7b84_44d3_9c98_2652bf144d96);
/// `CLSID_WINFS_ServerVirtualDeviceSet`.
pub const CLSID_WINFS_SERVER_VIRTUAL_DEVICE_SET: Guid =
    Guid::from_u128(0x92e6b26b_57da_47ed_8153_dff187a76dde);
/// `CLSID_WIDVDI_ClientVirtualDeviceSet` (2010 header; Windows Internal Database).
pub const CLSID_WIDVDI_CLIENT_VIRTUAL_DEVICE_SET: Guid =
    Guid::from_u128(0xa9a3fe12_61c7_496e_aabf_b83e3287ab82);
/// `CLSID_WIDVDI_ServerVirtualDeviceSet` (2010 header).
pub const CLSID_WIDVDI_SERVER_VIRTUAL_DEVICE_SET: Guid =
    Guid::from_u128(0xa6f16b19_0040_4947_8d3f_52de129bb615);

/// Every named GUID of `vdiguid.h` (plus IUnknown), with its header name.
pub const GUID_NAMES: &[(Guid, &str)] = &[
    (IID_IUNKNOWN, "IID_IUnknown"),
    (IID_ICLIENT_VIRTUAL_DEVICE, "IID_IClientVirtualDevice"),
    (
        IID_ICLIENT_VIRTUAL_DEVICE_SET,
        "IID_IClientVirtualDeviceSet",
    ),
    (
        IID_ICLIENT_VIRTUAL_DEVICE_SET2,
        "IID_IClientVirtualDeviceSet2",
    ),
    (IID_ISERVER_VIRTUAL_DEVICE, "IID_IServerVirtualDevice"),
    (
        IID_ISERVER_VIRTUAL_DEVICE_SET,
        "IID_IServerVirtualDeviceSet",
    ),
    (
        IID_ISERVER_VIRTUAL_DEVICE_SET2,
        "IID_IServerVirtualDeviceSet2",
    ),
    (
        CLSID_MSSQL_CLIENT_VIRTUAL_DEVICE_SET,
        "CLSID_MSSQL_ClientVirtualDeviceSet",
    ),
    (
        CLSID_MSSQL_SERVER_VIRTUAL_DEVICE_SET,
        "CLSID_MSSQL_ServerVirtualDeviceSet",
    ),
    (
        CLSID_WINFS_CLIENT_VIRTUAL_DEVICE_SET,
        "CLSID_WINFS_ClientVirtualDeviceSet",
    ),
    (
        CLSID_WINFS_SERVER_VIRTUAL_DEVICE_SET,
        "CLSID_WINFS_ServerVirtualDeviceSet",
    ),
    (
        CLSID_WIDVDI_CLIENT_VIRTUAL_DEVICE_SET,
        "CLSID_WIDVDI_ClientVirtualDeviceSet",
    ),
    (
        CLSID_WIDVDI_SERVER_VIRTUAL_DEVICE_SET,
        "CLSID_WIDVDI_ServerVirtualDeviceSet",
    ),
];

/// The interfaces QueryInterface on a client *set* object must answer
/// (notes §1.1).
pub const SET_QUERY_INTERFACE_IIDS: &[Guid] = &[
    IID_IUNKNOWN,
    IID_ICLIENT_VIRTUAL_DEVICE_SET,
    IID_ICLIENT_VIRTUAL_DEVICE_SET2,
];

/// The interfaces QueryInterface on a client *device* object must answer
/// (notes §1.1).
pub const DEVICE_QUERY_INTERFACE_IIDS: &[Guid] = &[IID_IUNKNOWN, IID_ICLIENT_VIRTUAL_DEVICE];

/// One vtable slot. `This` is the first argument of every slot and is not
/// listed in `args`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Slot {
    /// Zero-based slot index in the vtable.
    pub index: usize,
    /// Method name as in the header.
    pub name: &'static str,
    /// Arguments after `This`, as in the header (empty for none).
    pub args: &'static str,
    /// Return type as in the header.
    pub returns: &'static str,
}

/// A COM interface: its IID and its complete vtable, IUnknown slots included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Interface {
    /// Interface name as in the header.
    pub name: &'static str,
    /// Its IID.
    pub iid: Guid,
    /// Every slot, in vtable order, starting with IUnknown's three.
    pub slots: &'static [Slot],
}

impl Interface {
    /// The slot of the method with this name.
    pub fn slot(&self, name: &str) -> Option<&'static Slot> {
        self.slots.iter().find(|s| s.name == name)
    }
}

const fn slot(index: usize, name: &'static str, args: &'static str, returns: &'static str) -> Slot {
    Slot {
        index,
        name,
        args,
        returns,
    }
}

/// The IUnknown slots 0-2 every COM interface starts with.
pub const IUNKNOWN_SLOTS: [Slot; 3] = [
    slot(0, "QueryInterface", "REFIID riid, void **ppv", "HRESULT"),
    slot(1, "AddRef", "", "ULONG"),
    slot(2, "Release", "", "ULONG"),
];

const CLIENT_DEVICE_SLOTS: [Slot; 5] = [
    IUNKNOWN_SLOTS[0],
    IUNKNOWN_SLOTS[1],
    IUNKNOWN_SLOTS[2],
    slot(
        3,
        "GetCommand",
        "DWORD dwTimeOut, VDC_Command **ppCmd",
        "HRESULT",
    ),
    slot(
        4,
        "CompleteCommand",
        "VDC_Command *pCmd, DWORD dwCompletionCode, DWORD dwBytesTransferred, DWORDLONG dwlPosition",
        "HRESULT",
    ),
];

const CLIENT_SET2_SLOTS: [Slot; 13] = [
    IUNKNOWN_SLOTS[0],
    IUNKNOWN_SLOTS[1],
    IUNKNOWN_SLOTS[2],
    slot(3, "Create", "LPCWSTR lpName, VDConfig *pCfg", "HRESULT"),
    slot(
        4,
        "GetConfiguration",
        "DWORD dwTimeOut, VDConfig *pCfg",
        "HRESULT",
    ),
    slot(
        5,
        "OpenDevice",
        "LPCWSTR lpName, IClientVirtualDevice **ppVirtualDevice",
        "HRESULT",
    ),
    slot(6, "Close", "", "HRESULT"),
    slot(7, "SignalAbort", "", "HRESULT"),
    slot(8, "OpenInSecondary", "LPCWSTR lpSetName", "HRESULT"),
    slot(
        9,
        "GetBufferHandle",
        "BYTE *pBuffer, DWORD *pBufferHandle",
        "HRESULT",
    ),
    slot(
        10,
        "MapBufferHandle",
        "DWORD dwBuffer, BYTE **ppBuffer",
        "HRESULT",
    ),
    slot(
        11,
        "CreateEx",
        "LPCWSTR lpInstanceName, LPCWSTR lpName, VDConfig *pCfg",
        "HRESULT",
    ),
    slot(
        12,
        "OpenInSecondaryEx",
        "LPCWSTR lpInstanceName, LPCWSTR lpSetName",
        "HRESULT",
    ),
];

const SERVER_SET2_SLOTS: [Slot; 16] = [
    IUNKNOWN_SLOTS[0],
    IUNKNOWN_SLOTS[1],
    IUNKNOWN_SLOTS[2],
    slot(
        3,
        "Open",
        "LPCWSTR lpInstanceName, LPCWSTR lpSetName",
        "HRESULT",
    ),
    slot(4, "GetConfiguration", "VDConfig *pCfg", "HRESULT"),
    slot(
        5,
        "BeginConfiguration",
        "DWORD dwFeatures, DWORD dwBlockSize, DWORD dwAlignment, DWORD dwMaxTransferSize, DWORD dwTimeout",
        "HRESULT",
    ),
    slot(6, "EndConfiguration", "", "HRESULT"),
    slot(
        7,
        "RequestBuffers",
        "DWORD dwSize, DWORD dwAlignment, DWORD dwCount",
        "HRESULT",
    ),
    slot(
        8,
        "QueryAvailableBuffers",
        "DWORD dwSize, DWORD dwAlignment, DWORD *pCount",
        "HRESULT",
    ),
    slot(9, "ExecuteCompletionAgent", "", "HRESULT"),
    slot(
        10,
        "OpenDevice",
        "LPCWSTR lpName, IServerVirtualDevice **ppVirtualDevice",
        "HRESULT",
    ),
    slot(
        11,
        "AllocateBuffer",
        "BYTE **ppBuffer, DWORD dwSize, DWORD dwAlignment",
        "HRESULT",
    ),
    slot(12, "FreeBuffer", "BYTE *pBuffer, DWORD dwSize", "HRESULT"),
    slot(13, "IsSharedBuffer", "BYTE *pBuffer", "BOOL"),
    slot(14, "SignalAbort", "", "HRESULT"),
    slot(15, "Close", "", "HRESULT"),
];

const SERVER_DEVICE_SLOTS: [Slot; 5] = [
    IUNKNOWN_SLOTS[0],
    IUNKNOWN_SLOTS[1],
    IUNKNOWN_SLOTS[2],
    slot(3, "SendCommand", "VDS_Command *pCmd", "HRESULT"),
    slot(4, "CloseDevice", "", "HRESULT"),
];

/// `IClientVirtualDevice`: IUnknown, GetCommand, CompleteCommand (5 slots).
pub static ICLIENT_VIRTUAL_DEVICE: Interface = Interface {
    name: "IClientVirtualDevice",
    iid: IID_ICLIENT_VIRTUAL_DEVICE,
    slots: &CLIENT_DEVICE_SLOTS,
};

/// `IClientVirtualDeviceSet`: the first 11 slots of
/// [`ICLIENT_VIRTUAL_DEVICE_SET2`] (Create .. MapBufferHandle).
pub static ICLIENT_VIRTUAL_DEVICE_SET: Interface = Interface {
    name: "IClientVirtualDeviceSet",
    iid: IID_ICLIENT_VIRTUAL_DEVICE_SET,
    slots: CLIENT_SET2_SLOTS.split_at(11).0,
};

/// `IClientVirtualDeviceSet2`: IUnknown 0-2, the `IClientVirtualDeviceSet`
/// methods 3-10, CreateEx 11, OpenInSecondaryEx 12 (13 slots).
pub static ICLIENT_VIRTUAL_DEVICE_SET2: Interface = Interface {
    name: "IClientVirtualDeviceSet2",
    iid: IID_ICLIENT_VIRTUAL_DEVICE_SET2,
    slots: &CLIENT_SET2_SLOTS,
};

/// `IServerVirtualDeviceSet2` (derives directly from IUnknown; 16 slots).
/// BeginConfiguration's arguments follow the header order, not the doc page
/// (vdi-spec.md §8 #6).
pub static ISERVER_VIRTUAL_DEVICE_SET2: Interface = Interface {
    name: "IServerVirtualDeviceSet2",
    iid: IID_ISERVER_VIRTUAL_DEVICE_SET2,
    slots: &SERVER_SET2_SLOTS,
};

/// `IServerVirtualDevice`: IUnknown, SendCommand, CloseDevice (5 slots).
pub static ISERVER_VIRTUAL_DEVICE: Interface = Interface {
    name: "IServerVirtualDevice",
    iid: IID_ISERVER_VIRTUAL_DEVICE,
    slots: &SERVER_DEVICE_SLOTS,
};

/// Every interface described here.
pub static INTERFACES: [&Interface; 5] = [
    &ICLIENT_VIRTUAL_DEVICE,
    &ICLIENT_VIRTUAL_DEVICE_SET,
    &ICLIENT_VIRTUAL_DEVICE_SET2,
    &ISERVER_VIRTUAL_DEVICE_SET2,
    &ISERVER_VIRTUAL_DEVICE,
];

/// One exported member of the Linux `libsqlvdi.so` classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LinuxSymbol {
    /// `ClientVirtualDeviceSet` or `ClientVirtualDevice`.
    pub class: &'static str,
    /// The member's C++ signature.
    pub member: &'static str,
    /// Its Itanium-mangled symbol (g++ 12, measured).
    pub symbol: &'static str,
}

const fn sym(class: &'static str, member: &'static str, symbol: &'static str) -> LinuxSymbol {
    LinuxSymbol {
        class,
        member,
        symbol,
    }
}

const SET: &str = "ClientVirtualDeviceSet";
const DEV: &str = "ClientVirtualDevice";

/// Every symbol of the Linux class API (notes §1.2): both constructor (C1
/// complete, C2 base) and destructor (D1, D2) variants of both classes, and
/// every member function.
pub static LINUX_SYMBOLS: &[LinuxSymbol] = &[
    sym(
        SET,
        "ClientVirtualDeviceSet::ClientVirtualDeviceSet()",
        "_ZN22ClientVirtualDeviceSetC1Ev",
    ),
    sym(
        SET,
        "ClientVirtualDeviceSet::ClientVirtualDeviceSet()",
        "_ZN22ClientVirtualDeviceSetC2Ev",
    ),
    sym(
        SET,
        "ClientVirtualDeviceSet::~ClientVirtualDeviceSet()",
        "_ZN22ClientVirtualDeviceSetD1Ev",
    ),
    sym(
        SET,
        "ClientVirtualDeviceSet::~ClientVirtualDeviceSet()",
        "_ZN22ClientVirtualDeviceSetD2Ev",
    ),
    sym(
        SET,
        "int ClientVirtualDeviceSet::Create(char* name, VDConfig* cfg)",
        "_ZN22ClientVirtualDeviceSet6CreateEPcP8VDConfig",
    ),
    sym(
        SET,
        "int ClientVirtualDeviceSet::GetConfiguration(time_t timeout, VDConfig* cfg)",
        "_ZN22ClientVirtualDeviceSet16GetConfigurationElP8VDConfig",
    ),
    sym(
        SET,
        "int ClientVirtualDeviceSet::OpenDevice(char* name, ClientVirtualDevice** dev)",
        "_ZN22ClientVirtualDeviceSet10OpenDeviceEPcPP19ClientVirtualDevice",
    ),
    sym(
        SET,
        "int ClientVirtualDeviceSet::Close()",
        "_ZN22ClientVirtualDeviceSet5CloseEv",
    ),
    sym(
        SET,
        "int ClientVirtualDeviceSet::SignalAbort()",
        "_ZN22ClientVirtualDeviceSet11SignalAbortEv",
    ),
    sym(
        SET,
        "int ClientVirtualDeviceSet::OpenInSecondary(char* setName)",
        "_ZN22ClientVirtualDeviceSet15OpenInSecondaryEPc",
    ),
    sym(
        SET,
        "int ClientVirtualDeviceSet::GetBufferHandle(uint8_t* buf, unsigned int* handle)",
        "_ZN22ClientVirtualDeviceSet15GetBufferHandleEPhPj",
    ),
    sym(
        SET,
        "int ClientVirtualDeviceSet::MapBufferHandle(int handle, uint8_t** buf)",
        "_ZN22ClientVirtualDeviceSet15MapBufferHandleEiPPh",
    ),
    sym(
        SET,
        "void ClientVirtualDeviceSet::RegisterDeviceClosed()",
        "_ZN22ClientVirtualDeviceSet20RegisterDeviceClosedEv",
    ),
    sym(
        DEV,
        "ClientVirtualDevice::ClientVirtualDevice()",
        "_ZN19ClientVirtualDeviceC1Ev",
    ),
    sym(
        DEV,
        "ClientVirtualDevice::ClientVirtualDevice()",
        "_ZN19ClientVirtualDeviceC2Ev",
    ),
    sym(
        DEV,
        "ClientVirtualDevice::~ClientVirtualDevice()",
        "_ZN19ClientVirtualDeviceD1Ev",
    ),
    sym(
        DEV,
        "ClientVirtualDevice::~ClientVirtualDevice()",
        "_ZN19ClientVirtualDeviceD2Ev",
    ),
    sym(
        DEV,
        "int ClientVirtualDevice::GetCommand(time_t timeout, VDC_Command** cmd)",
        "_ZN19ClientVirtualDevice10GetCommandElPP11VDC_Command",
    ),
    sym(
        DEV,
        "int ClientVirtualDevice::CompleteCommand(VDC_Command* cmd, int code, unsigned long bytes, int64_t pos)",
        "_ZN19ClientVirtualDevice15CompleteCommandEP11VDC_Commandiml",
    ),
];

/// Size in bytes of each Linux class object (one pointer to a private
/// implementation; notes §1.2).
pub const LINUX_CLASS_SIZE: usize = 8;

/// The Win32 completion codes the Linux `vdi.h` defines; a Linux client must
/// define every other code it uses itself (vdi-spec.md §3.2, §6.2).
pub const LINUX_HEADER_WIN32: &[Win32] = &[
    Win32::ERROR_SUCCESS,
    Win32::ERROR_ARENA_TRASHED,
    Win32::ERROR_HANDLE_EOF,
    Win32::ERROR_HANDLE_DISK_FULL,
    Win32::ERROR_NOT_SUPPORTED,
    Win32::ERROR_DISK_FULL,
    Win32::ERROR_OPERATION_ABORTED,
];

/// `INFINITE` for Windows DWORD timeouts. The Linux header defines none: there
/// a negative `time_t` waits forever and `0xFFFF_FFFF` waits about 49.7 days
/// (notes §1.2).
pub const INFINITE: u32 = 0xFFFF_FFFF;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn abi_guid_display_is_lowercase_braced() {
        assert_eq!(
            IID_ICLIENT_VIRTUAL_DEVICE.to_string(),
            "{40700424-0080-11d2-851f-00c04fc21759}"
        );
        assert_eq!(
            IID_ISERVER_VIRTUAL_DEVICE_SET2.to_string(),
            "{aecbd0d6-24c6-11d3-85b7-00c04fc21759}"
        );
        assert_eq!(
            IID_IUNKNOWN.to_string(),
            "{00000000-0000-0000-c000-000000000046}"
        );
    }

    #[test]
    fn abi_guid_fields_are_exact() {
        assert_eq!(
            IID_ICLIENT_VIRTUAL_DEVICE,
            Guid::new(
                0x4070_0424,
                0x0080,
                0x11d2,
                [0x85, 0x1f, 0x00, 0xc0, 0x4f, 0xc2, 0x17, 0x59]
            )
        );
        assert_eq!(
            IID_ICLIENT_VIRTUAL_DEVICE_SET2,
            Guid::new(
                0xd0e6_eb07,
                0x7a62,
                0x11d2,
                [0x85, 0x73, 0x00, 0xc0, 0x4f, 0xc2, 0x17, 0x59]
            )
        );
        assert_eq!(
            IID_IUNKNOWN,
            Guid::new(0, 0, 0, [0xc0, 0, 0, 0, 0, 0, 0, 0x46])
        );
        assert_eq!(std::mem::size_of::<Guid>(), 16);
        assert_eq!(std::mem::align_of::<Guid>(), 4);
    }

    #[test]
    fn abi_guid_values_match_vdiguid_h() {
        // vdi-spec.md §3.7, notes §1.1 (text copied from the reference).
        let expect = [
            ("IID_IUnknown", "{00000000-0000-0000-C000-000000000046}"),
            (
                "IID_IClientVirtualDevice",
                "{40700424-0080-11d2-851f-00c04fc21759}",
            ),
            (
                "IID_IClientVirtualDeviceSet",
                "{40700425-0080-11d2-851f-00c04fc21759}",
            ),
            (
                "IID_IClientVirtualDeviceSet2",
                "{d0e6eb07-7a62-11d2-8573-00c04fc21759}",
            ),
            (
                "IID_IServerVirtualDevice",
                "{b5e7a131-a7bd-11d1-84c2-00c04fc21759}",
            ),
            (
                "IID_IServerVirtualDeviceSet",
                "{b5e7a132-a7bd-11d1-84c2-00c04fc21759}",
            ),
            (
                "IID_IServerVirtualDeviceSet2",
                "{AECBD0D6-24C6-11d3-85B7-00C04FC21759}",
            ),
            (
                "CLSID_MSSQL_ClientVirtualDeviceSet",
                "{40700425-0080-11d2-851f-00c04fc21759}",
            ),
            (
                "CLSID_MSSQL_ServerVirtualDeviceSet",
                "{b5e7a132-a7bd-11d1-84c2-00c04fc21759}",
            ),
            (
                "CLSID_WINFS_ClientVirtualDeviceSet",
                "{50b99b13-7b84-44d3-9c98-2652bf144d96}",
            ),
            (
                "CLSID_WINFS_ServerVirtualDeviceSet",
                "{92e6b26b-57da-47ed-8153-dff187a76dde}",
            ),
            (
                "CLSID_WIDVDI_ClientVirtualDeviceSet",
                "{a9a3fe12-61c7-496e-aabf-b83e3287ab82}",
            ),
            (
                "CLSID_WIDVDI_ServerVirtualDeviceSet",
                "{a6f16b19-0040-4947-8d3f-52de129bb615}",
            ),
        ];
        assert_eq!(GUID_NAMES.len(), expect.len());
        for (name, text) in expect {
            let (g, _) = GUID_NAMES.iter().find(|(_, n)| *n == name).unwrap();
            assert_eq!(Some(*g), Guid::parse(text), "{name}");
            assert_eq!(g.to_string(), text.to_lowercase(), "{name}");
        }
        assert_eq!(
            CLSID_MSSQL_CLIENT_VIRTUAL_DEVICE_SET,
            IID_ICLIENT_VIRTUAL_DEVICE_SET
        );
        assert_eq!(
            CLSID_MSSQL_SERVER_VIRTUAL_DEVICE_SET,
            IID_ISERVER_VIRTUAL_DEVICE_SET
        );
    }

    #[test]
    fn abi_guid_parse_roundtrip_and_rejects() {
        for (g, _) in GUID_NAMES {
            let s = g.to_string();
            assert_eq!(Guid::parse(&s), Some(*g));
            assert_eq!(Guid::parse(&s.to_uppercase()), Some(*g));
            assert_eq!(Guid::parse(&s[1..s.len() - 1]), Some(*g));
            assert_eq!(Guid::from_u128(g.to_u128()), *g);
        }
        for bad in [
            "",
            "{}",
            "{40700424-0080-11d2-851f-00c04fc21759",
            "40700424-0080-11d2-851f-00c04fc21759}",
            "{40700424-0080-11d2-851f00c04fc21759}",
            "{40700424-0080-11d2-851f-00c04fc2175}",
            "{40700424-0080-11d2-851f-00c04fc217590}",
            "{4070042g-0080-11d2-851f-00c04fc21759}",
            "{+0700424-0080-11d2-851f-00c04fc21759}",
            "{{40700424-0080-11d2-851f-00c04fc21759}}",
        ] {
            assert_eq!(Guid::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn abi_client_device_vtable_order() {
        let names: Vec<_> = ICLIENT_VIRTUAL_DEVICE
            .slots
            .iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(
            names,
            [
                "QueryInterface",
                "AddRef",
                "Release",
                "GetCommand",
                "CompleteCommand"
            ]
        );
        assert_eq!(
            ICLIENT_VIRTUAL_DEVICE.slot("GetCommand").unwrap().args,
            "DWORD dwTimeOut, VDC_Command **ppCmd"
        );
    }

    #[test]
    fn abi_client_set2_vtable_order() {
        let s = &ICLIENT_VIRTUAL_DEVICE_SET2;
        assert_eq!(s.slots.len(), 13);
        let names: Vec<_> = s.slots.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "QueryInterface",
                "AddRef",
                "Release",
                "Create",
                "GetConfiguration",
                "OpenDevice",
                "Close",
                "SignalAbort",
                "OpenInSecondary",
                "GetBufferHandle",
                "MapBufferHandle",
                "CreateEx",
                "OpenInSecondaryEx"
            ]
        );
        assert_eq!(s.slots[11].name, "CreateEx");
        assert_eq!(s.slots[12].name, "OpenInSecondaryEx");
        assert_eq!(ICLIENT_VIRTUAL_DEVICE_SET.slots, &s.slots[..11]);
        assert_eq!(s.slot("AddRef").unwrap().returns, "ULONG");
    }

    #[test]
    fn abi_server_vtables_order() {
        let names: Vec<_> = ISERVER_VIRTUAL_DEVICE_SET2
            .slots
            .iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(
            names[3..],
            [
                "Open",
                "GetConfiguration",
                "BeginConfiguration",
                "EndConfiguration",
                "RequestBuffers",
                "QueryAvailableBuffers",
                "ExecuteCompletionAgent",
                "OpenDevice",
                "AllocateBuffer",
                "FreeBuffer",
                "IsSharedBuffer",
                "SignalAbort",
                "Close"
            ]
        );
        // Header order, not the doc page's (vdi-spec.md §8 #6).
        assert!(
            ISERVER_VIRTUAL_DEVICE_SET2
                .slot("BeginConfiguration")
                .unwrap()
                .args
                .starts_with("DWORD dwFeatures, DWORD dwBlockSize, DWORD dwAlignment")
        );
        let names: Vec<_> = ISERVER_VIRTUAL_DEVICE
            .slots
            .iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names[3..], ["SendCommand", "CloseDevice"]);
    }

    #[test]
    fn abi_slot_indices_are_positions() {
        for i in INTERFACES {
            assert_eq!(i.slots[..3], IUNKNOWN_SLOTS, "{}", i.name);
            for (n, s) in i.slots.iter().enumerate() {
                assert_eq!(s.index, n, "{}::{}", i.name, s.name);
                assert!(!s.args.contains("This"), "{}::{}", i.name, s.name);
            }
        }
    }

    #[test]
    fn abi_linux_symbols_each_listed_once() {
        let expect = [
            "_ZN22ClientVirtualDeviceSetC1Ev",
            "_ZN22ClientVirtualDeviceSetC2Ev",
            "_ZN22ClientVirtualDeviceSetD1Ev",
            "_ZN22ClientVirtualDeviceSetD2Ev",
            "_ZN22ClientVirtualDeviceSet6CreateEPcP8VDConfig",
            "_ZN22ClientVirtualDeviceSet16GetConfigurationElP8VDConfig",
            "_ZN22ClientVirtualDeviceSet10OpenDeviceEPcPP19ClientVirtualDevice",
            "_ZN22ClientVirtualDeviceSet5CloseEv",
            "_ZN22ClientVirtualDeviceSet11SignalAbortEv",
            "_ZN22ClientVirtualDeviceSet15OpenInSecondaryEPc",
            "_ZN22ClientVirtualDeviceSet15GetBufferHandleEPhPj",
            "_ZN22ClientVirtualDeviceSet15MapBufferHandleEiPPh",
            "_ZN22ClientVirtualDeviceSet20RegisterDeviceClosedEv",
            "_ZN19ClientVirtualDeviceC1Ev",
            "_ZN19ClientVirtualDeviceC2Ev",
            "_ZN19ClientVirtualDeviceD1Ev",
            "_ZN19ClientVirtualDeviceD2Ev",
            "_ZN19ClientVirtualDevice10GetCommandElPP11VDC_Command",
            "_ZN19ClientVirtualDevice15CompleteCommandEP11VDC_Commandiml",
        ];
        assert_eq!(LINUX_SYMBOLS.len(), expect.len());
        for e in expect {
            let n = LINUX_SYMBOLS.iter().filter(|s| s.symbol == e).count();
            assert_eq!(n, 1, "{e}");
        }
        for s in LINUX_SYMBOLS {
            // Itanium: _ZN <len><class> ...; the class field must agree.
            let prefix = format!("_ZN{}{}", s.class.len(), s.class);
            assert!(s.symbol.starts_with(&prefix), "{}", s.symbol);
            assert!(s.member.contains(&format!("{}::", s.class)), "{}", s.member);
        }
        let unique: BTreeSet<_> = LINUX_SYMBOLS.iter().map(|s| s.symbol).collect();
        assert_eq!(unique.len(), LINUX_SYMBOLS.len());
    }

    #[test]
    fn abi_linux_header_win32_subset() {
        let v: Vec<u32> = LINUX_HEADER_WIN32.iter().map(|c| c.0).collect();
        assert_eq!(v, [0, 7, 38, 39, 50, 112, 995]);
        assert!(LINUX_HEADER_WIN32.iter().all(|c| c.name().is_some()));
    }

    #[test]
    fn abi_query_interface_sets() {
        assert_eq!(SET_QUERY_INTERFACE_IIDS.len(), 3);
        assert!(SET_QUERY_INTERFACE_IIDS.contains(&ICLIENT_VIRTUAL_DEVICE_SET2.iid));
        assert!(!SET_QUERY_INTERFACE_IIDS.contains(&IID_ICLIENT_VIRTUAL_DEVICE));
        assert_eq!(
            DEVICE_QUERY_INTERFACE_IIDS,
            [IID_IUNKNOWN, IID_ICLIENT_VIRTUAL_DEVICE]
        );
    }
}
