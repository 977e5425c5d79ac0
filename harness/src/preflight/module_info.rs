//! What the checks read from a module's binary: imports and function
//! exports with their signatures, the memories and the functions it
//! defines. Parsed with every feature on; which features the module needs
//! is `features.rs`'s question.

use wasmparser::{Encoding, ExternalKind, FuncType, Parser, Payload, TypeRef, ValType};

/// A function signature as plain wasm value types (`i32`, `i64`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Signature {
    pub params: Vec<ValType>,
    pub results: Vec<ValType>,
}

impl Signature {
    fn of(ty: &FuncType) -> Signature {
        Signature {
            params: ty.params().to_vec(),
            results: ty.results().to_vec(),
        }
    }
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |types: &[ValType]| {
            types
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(f, "({}) -> ({})", list(&self.params), list(&self.results))
    }
}

/// One import: where from, its name, and its signature when it is a function.
#[derive(Clone, Debug)]
pub(crate) struct Import {
    pub module: String,
    pub name: String,
    /// None for a memory, table, global or tag import.
    pub signature: Option<Signature>,
}

/// One function export.
#[derive(Clone, Debug)]
pub(crate) struct FuncExport {
    pub name: String,
    /// None when its type is not a plain function type (a GC-era module).
    pub signature: Option<Signature>,
}

/// The parts of a module the checks look at.
#[derive(Clone, Debug, Default)]
pub(crate) struct ModuleInfo {
    pub imports: Vec<Import>,
    pub func_exports: Vec<FuncExport>,
    /// Every export name (functions, memories, globals, tables).
    pub export_names: Vec<String>,
    /// Functions defined (imports not counted).
    pub defined_functions: u32,
    /// Initial size of each memory the module defines, in 64 KiB pages.
    pub memory_pages: Vec<u64>,
    /// Whether the module has a start section (run at instantiation).
    pub has_start_function: bool,
}

impl ModuleInfo {
    /// Parses `bytes`; the error says what could not be read, and where.
    pub fn parse(bytes: &[u8]) -> Result<ModuleInfo, String> {
        let mut info = ModuleInfo::default();
        let mut types: Vec<Option<Signature>> = Vec::new();
        // Type index of every function: imported ones first, as in wasm.
        let mut func_types: Vec<u32> = Vec::new();
        let mut exports: Vec<(String, u32)> = Vec::new();
        let mut gc_types = false;
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.map_err(|e| e.to_string())? {
                Payload::Version {
                    encoding: Encoding::Component,
                    ..
                } => {
                    return Err("it is a WebAssembly component, not a core module; Envoy \
                                loads core modules only (build for wasm32-wasip1, not wasip2)"
                        .to_string());
                }
                Payload::TypeSection(reader) => {
                    for group in reader.into_iter_err_on_gc_types() {
                        match group {
                            Ok(ty) => types.push(Some(Signature::of(&ty))),
                            // A GC recursion group holds several types, so
                            // later indices no longer line up: trust none.
                            Err(_) => gc_types = true,
                        }
                    }
                }
                Payload::ImportSection(reader) => {
                    for import in reader.into_imports() {
                        let import = import.map_err(|e| e.to_string())?;
                        let signature = match import.ty {
                            TypeRef::Func(index) | TypeRef::FuncExact(index) => {
                                func_types.push(index);
                                types.get(index as usize).cloned().flatten()
                            }
                            _ => None,
                        };
                        info.imports.push(Import {
                            module: import.module.to_string(),
                            name: import.name.to_string(),
                            signature,
                        });
                    }
                }
                Payload::FunctionSection(reader) => {
                    for index in reader {
                        func_types.push(index.map_err(|e| e.to_string())?);
                        info.defined_functions += 1;
                    }
                }
                Payload::MemorySection(reader) => {
                    for memory in reader {
                        info.memory_pages
                            .push(memory.map_err(|e| e.to_string())?.initial);
                    }
                }
                Payload::ExportSection(reader) => {
                    for export in reader {
                        let export = export.map_err(|e| e.to_string())?;
                        info.export_names.push(export.name.to_string());
                        if matches!(export.kind, ExternalKind::Func | ExternalKind::FuncExact) {
                            exports.push((export.name.to_string(), export.index));
                        }
                    }
                }
                Payload::StartSection { .. } => info.has_start_function = true,
                _ => {}
            }
        }
        if gc_types {
            types.clear();
            info.imports.iter_mut().for_each(|i| i.signature = None);
        }
        info.func_exports = exports
            .into_iter()
            .map(|(name, index)| FuncExport {
                signature: func_types
                    .get(index as usize)
                    .and_then(|ty| types.get(*ty as usize).cloned().flatten()),
                name,
            })
            .collect();
        Ok(info)
    }

    /// Whether the module exports `name` (of any kind).
    pub fn exports(&self, name: &str) -> bool {
        self.export_names.iter().any(|e| e == name)
    }
}
