//! A compile bomb: a valid WebAssembly component of about 3 MiB that costs wasmtime's
//! `Component::new` (Cranelift, `OptLevel::Speed`) minutes of CPU and gigabytes of
//! memory, before any run limit applies. It is encoded by hand so the tests need no
//! WebAssembly tooling; it implements no world, so a host that does compile it ends
//! with a `LoadError` anyway: the cost is all in the compile.
//!
//! Its core module holds two kinds of function, each aimed at a different resource:
//!
//! - One *phi storm* (memory): a loop over 500 locals, every one of them updated in
//!   the loop body, whose back edge is a `br_table` of 50,000 entries that all target
//!   the loop. Cranelift gives the loop header one block parameter per local and every
//!   table entry its own argument list, then splits each entry into an edge block of
//!   its own for the register allocator: 500 x 50,000 = 25 million block arguments and
//!   moves from 60 KB of code. Cost grows with the product, so it is the most
//!   expensive shape per byte of those tried (others: long chains of `if` diamonds and
//!   deeply nested blocks each over many live locals, which need ten times the bytes
//!   for the same cost).
//! - Five *register pressure* functions (CPU): one straight-line block of 50,000
//!   interdependent multiply-adds over 500 locals that all stay live to the end, far
//!   more than the 16 registers, so the allocator splits and spills without end.
//!   About 20 s of CPU and 250 MB each; they keep the compile busy after the phi storm.
//!
//! Measured with the `httpsd` of wasmtime 48.0.8 on the 2-core test machine (while
//! another build ran), compiling in the `compile-component` child without limits:
//! about 76 s wall clock (more than 100 s of CPU over both cores) and 2.5 GB peak RSS;
//! the phi storm alone reaches 2.35 GB of RSS (more than 3 GiB of data segment)
//! within about 25 s. See `compile_bomb` for the command.

/// The bytes of the compile-bomb component (a component binary whose only section is
/// one core module). To measure it:
///
/// ```text
/// /usr/bin/time -v httpsd compile-component --fuel on /tmp/bomb.cwasm < bomb.wasm
/// ```
pub fn compile_bomb() -> Vec<u8> {
    let mut bodies = vec![phi_storm(PHI_LOCALS, PHI_TABLE_ENTRIES)];
    let pressure = register_pressure(PRESSURE_LOCALS, PRESSURE_ROUNDS);
    bodies.extend(std::iter::repeat_n(pressure, PRESSURE_FUNCTIONS));
    component(&core_module(&bodies))
}

/// Locals carried around the phi storm's loop: block parameters of its header.
const PHI_LOCALS: u32 = 500;
/// Entries of the phi storm's `br_table`: each one an edge with `PHI_LOCALS` arguments.
const PHI_TABLE_ENTRIES: u32 = 50_000;
/// Register-pressure functions; Cranelift compiles them in parallel with the phi storm.
const PRESSURE_FUNCTIONS: usize = 5;
/// Locals live across each register-pressure function.
const PRESSURE_LOCALS: u32 = 500;
/// Times each register-pressure function updates every one of its locals.
const PRESSURE_ROUNDS: u32 = 100;

// The few opcodes used, from the WebAssembly core specification.
const BLOCK: u8 = 0x02;
const LOOP: u8 = 0x03;
const END: u8 = 0x0b;
const BR_TABLE: u8 = 0x0e;
const LOCAL_GET: u8 = 0x20;
const LOCAL_SET: u8 = 0x21;
const LOCAL_TEE: u8 = 0x22;
const I32_CONST: u8 = 0x41;
const I32_ADD: u8 = 0x6a;
const I32_SUB: u8 = 0x6b;
const I32_MUL: u8 = 0x6c;
const EMPTY_BLOCK_TYPE: u8 = 0x40;
const I32: u8 = 0x7f;

/// `(func (param i32) (result i32) (local i32 x PHI_LOCALS) ...)`:
///
/// ```text
/// x_i = param + 7919 * i                  for every local
/// block $exit
///   loop $top
///     x_i = x_i + x_(i+1)                 for every local (all change every iteration)
///     param = param - 1
///     br_table $top x entries, $exit      (indexed by param)
///   end
/// end
/// return param + sum of x_i               (all stay live)
/// ```
fn phi_storm(locals: u32, entries: u32) -> Vec<u8> {
    let mut f = Body::new(locals);
    f.init_locals(locals);
    f.code
        .extend([BLOCK, EMPTY_BLOCK_TYPE, LOOP, EMPTY_BLOCK_TYPE]);
    for i in 1..=locals {
        f.local_get(i);
        f.local_get(i % locals + 1);
        f.code.push(I32_ADD);
        f.local_set(i);
    }
    f.local_get(0);
    f.i32_const(1);
    f.code.push(I32_SUB);
    f.local_tee(0);
    f.code.push(BR_TABLE);
    uleb(&mut f.code, entries.into());
    // Label 0 is the loop (a back edge), label 1 the block around it (the exit).
    f.code.extend(std::iter::repeat_n(0, entries as usize));
    f.code.push(1);
    f.code.extend([END, END]);
    f.finish(locals)
}

/// `(func (param i32) (result i32) (local i32 x locals) ...)`: one basic block of
/// `rounds * locals` updates `x_i = x_i * x_(i+1) + x_(i+7)`, then the sum of all.
fn register_pressure(locals: u32, rounds: u32) -> Vec<u8> {
    let mut f = Body::new(locals);
    f.init_locals(locals);
    for _ in 0..rounds {
        for i in 1..=locals {
            f.local_get(i);
            f.local_get(i % locals + 1);
            f.code.push(I32_MUL);
            f.local_get((i + 6) % locals + 1);
            f.code.push(I32_ADD);
            f.local_set(i);
        }
    }
    f.finish(locals)
}

/// A function body being encoded: local 0 is the `i32` parameter, locals `1..=n` the
/// declared `i32` locals.
struct Body {
    code: Vec<u8>,
}

impl Body {
    /// Starts a body with `locals` declared `i32` locals (one declaration entry).
    fn new(locals: u32) -> Body {
        let mut code = vec![1];
        uleb(&mut code, locals.into());
        code.push(I32);
        Body { code }
    }

    /// `x_i = param + 7919 * i`: distinct values the compiler cannot fold away.
    fn init_locals(&mut self, locals: u32) {
        for i in 1..=locals {
            self.local_get(0);
            self.i32_const(i64::from(i) * 7919);
            self.code.push(I32_ADD);
            self.local_set(i);
        }
    }

    /// Returns the parameter plus every local, which keeps them all live to the end.
    fn finish(mut self, locals: u32) -> Vec<u8> {
        self.local_get(0);
        for i in 1..=locals {
            self.local_get(i);
            self.code.push(I32_ADD);
        }
        self.code.push(END);
        self.code
    }

    fn local_get(&mut self, index: u32) {
        self.code.push(LOCAL_GET);
        uleb(&mut self.code, index.into());
    }

    fn local_set(&mut self, index: u32) {
        self.code.push(LOCAL_SET);
        uleb(&mut self.code, index.into());
    }

    fn local_tee(&mut self, index: u32) {
        self.code.push(LOCAL_TEE);
        uleb(&mut self.code, index.into());
    }

    fn i32_const(&mut self, value: i64) {
        self.code.push(I32_CONST);
        sleb(&mut self.code, value);
    }
}

/// A core module whose functions all have type `(i32) -> i32` and these bodies. Nothing
/// is exported: wasmtime compiles every defined function regardless.
fn core_module(bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    // Type section: one function type, (i32) -> i32.
    section(&mut module, 1, &[1, 0x60, 1, I32, 1, I32]);
    // Function section: every function has type 0.
    let mut functions = Vec::new();
    uleb(&mut functions, bodies.len() as u64);
    functions.extend(std::iter::repeat_n(0, bodies.len()));
    section(&mut module, 3, &functions);
    // Code section: each body prefixed with its size.
    let mut code = Vec::new();
    uleb(&mut code, bodies.len() as u64);
    for body in bodies {
        uleb(&mut code, body.len() as u64);
        code.extend_from_slice(body);
    }
    section(&mut module, 10, &code);
    module
}

/// A component binary (preamble `\0asm`, version 0x0d, layer 1) with `module` as its
/// only section, a core-module section (id 1).
fn component(module: &[u8]) -> Vec<u8> {
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    section(&mut component, 1, module);
    component
}

/// A section: its id, its size as LEB128, its contents.
fn section(out: &mut Vec<u8>, id: u8, contents: &[u8]) {
    out.push(id);
    uleb(out, contents.len() as u64);
    out.extend_from_slice(contents);
}

/// Unsigned LEB128.
fn uleb(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Signed LEB128.
fn sleb(out: &mut Vec<u8>, mut value: i64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        let sign_bit_clear = byte & 0x40 == 0;
        if (value == 0 && sign_bit_clear) || (value == -1 && !sign_bit_clear) {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}
