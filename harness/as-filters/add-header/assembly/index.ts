// An AssemblyScript filter on Solo.io's proxy-runtime (Proxy-Wasm ABI
// 0.2.0): no Rust, no proxy-wasm Rust SDK. Its plugin configuration is
// `name=value`; it rejects anything else and adds that header to every
// response. Root id: as_add_header.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context,
  log, LogLevelValues,
} from "@solo-io/proxy-runtime";

class AddHeaderRoot extends RootContext {
  name: string = "";
  value: string = "";

  onConfigure(configuration_size: u32): bool {
    super.onConfigure(configuration_size);
    const configuration = this.getConfiguration();
    const at = configuration.indexOf("=");
    if (at <= 0) {
      log(LogLevelValues.error, "as_add_header: configuration must be name=value, got \"" + configuration + "\"");
      return false;
    }
    this.name = configuration.substring(0, at);
    this.value = configuration.substring(at + 1);
    log(LogLevelValues.info, "as_add_header: adding " + this.name + " to responses");
    return true;
  }

  createContext(context_id: u32): Context {
    return new AddHeader(context_id, this);
  }
}

class AddHeader extends Context {
  root: AddHeaderRoot;

  constructor(context_id: u32, root_context: AddHeaderRoot) {
    super(context_id, root_context);
    this.root = root_context;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add(this.root.name, this.root.value);
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => { return new AddHeaderRoot(context_id); }, "as_add_header");
