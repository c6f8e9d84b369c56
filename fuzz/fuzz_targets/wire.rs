//! Property: the control-channel frame reader (`vdi_host::remote::wire::
//! read_frame`, what `vdisim serve` and the stand-in library read from the
//! socket) never panics on any byte stream: it yields frames, a clean end
//! or an error, and a reader looping until then always stops.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vdi_host::remote::wire::read_frame;

fuzz_target!(|bytes: &[u8]| {
    let mut r = bytes;
    // Each frame read consumes at least its 4-byte header, so the loop is
    // bounded by the input; the bound below only guards that claim.
    for _ in 0..=bytes.len() / 4 + 1 {
        match read_frame(&mut r) {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return,
        }
    }
    panic!("read_frame kept yielding frames past the end of its input");
});
