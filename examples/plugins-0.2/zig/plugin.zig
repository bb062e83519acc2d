//! Oldest first in Zig: the reference strategy of contract 0.2
//! (plugins/oldest-first), call for call.
//!
//! Counts the running instances of the groups matching `groups`, reads them
//! `page-size` at a time, and stops the `count` launched longest ago (ties by
//! id) for `stop-secs` each; the host starts each again and measures its
//! group's recovery.
//!
//! Built on wit-bindgen's C bindings of `wit/` (contract 0.2.0), translated to
//! Zig (`bindings`) by `cargo xtask build-plugin examples/plugins-0.2/zig`.
//! What an import returns is ours to free; what `run` and `metadata` return
//! must come from `malloc` (the bindings `free` it after the call).

const std = @import("std");
const c = @import("bindings");

/// A panic traps (the host reports it, naming the plugin).
pub const panic = std.debug.no_panic;

const NAME = "oldest-first-zig";
const VERSION = "0.1.0";
const DESCRIPTION = "Oldest first in Zig: stops the oldest running instances of the matching groups for a while";

const String = c.strategy_plugin_string_t;
const CloudError = c.wasmonkey_chaos_types_cloud_error_t;
const Instance = c.wasmonkey_chaos_cloud_instance_t;
const Params = c.exports_wasmonkey_chaos_strategy_list_param_t;
const ParamValue = c.exports_wasmonkey_chaos_strategy_param_value_t;
const ParamSpec = c.exports_wasmonkey_chaos_strategy_param_spec_t;
const RunError = c.exports_wasmonkey_chaos_strategy_run_error_t;
const Outcome = c.exports_wasmonkey_chaos_strategy_outcome_t;

const RUNNING: u8 = c.WASMONKEY_CHAOS_TYPES_INSTANCE_STATE_RUNNING;
const SPOT: u8 = c.WASMONKEY_CHAOS_TYPES_MARKET_SPOT;
const TEXT: u8 = c.EXPORTS_WASMONKEY_CHAOS_STRATEGY_PARAM_VALUE_TEXT;
const INTEGER: u8 = c.EXPORTS_WASMONKEY_CHAOS_STRATEGY_PARAM_VALUE_INTEGER;

const gpa = std.heap.c_allocator;

const Level = enum(u8) { debug = 1, info = 2, warn = 3, err = 4 };

const ERROR_KINDS = [_][]const u8{ "denied", "not-found", "budget-exhausted", "throttled", "invalid", "backend" };

fn bytes(s: String) []const u8 {
    if (s.len == 0) return "";
    return s.ptr[0..s.len];
}

fn items(comptime T: type, ptr: [*c]T, len: usize) []T {
    if (len == 0) return &.{};
    const many: [*]T = ptr;
    return many[0..len];
}

fn borrow(text: []const u8) String {
    return .{ .ptr = @constCast(text.ptr), .len = text.len };
}

/// A `malloc`ed copy of `text`, for what the bindings will `free`.
fn own(text: []const u8) String {
    if (text.len == 0) return .{ .ptr = null, .len = 0 };
    const raw = std.c.malloc(text.len) orelse @panic("out of memory");
    const out: [*]u8 = @ptrCast(raw);
    @memcpy(out[0..text.len], text);
    return .{ .ptr = out, .len = text.len };
}

fn print(comptime fmt: []const u8, args: anytype) []u8 {
    return std.fmt.allocPrint(gpa, fmt, args) catch @panic("out of memory");
}

fn log(level: Level, comptime fmt: []const u8, args: anytype) void {
    const text = print(fmt, args);
    defer gpa.free(text);
    var m = borrow(text);
    c.wasmonkey_chaos_runtime_log(@intFromEnum(level), &m);
}

fn param(params: *const Params, name: []const u8, tag: u8) ?*const ParamValue {
    for (items(c.exports_wasmonkey_chaos_strategy_param_t, params.ptr, params.len)) |*p| {
        if (std.mem.eql(u8, bytes(p.name), name) and p.value.tag == tag) return &p.value;
    }
    return null;
}

fn integer(params: *const Params, name: []const u8, fallback: i64) i64 {
    const value = param(params, name, INTEGER) orelse return fallback;
    return value.val.integer;
}

/// By launch time, then id in byte order (as Rust compares `str`s).
fn oldestFirst(_: void, a: Instance, b: Instance) bool {
    if (a.launched_at_ms != b.launched_at_ms) return a.launched_at_ms < b.launched_at_ms;
    return std.mem.order(u8, bytes(a.id), bytes(b.id)) == .lt;
}

fn experiment(params: *const Params, ret: *Outcome, err: *RunError) bool {
    const groups = if (param(params, "groups", TEXT)) |v| bytes(v.val.text) else "*";
    const count: usize = @intCast(std.math.clamp(integer(params, "count", 1), 0, 1_000_000));
    const stop_ms: u64 = @as(u64, @intCast(std.math.clamp(integer(params, "stop-secs", 60), 0, std.math.maxInt(i64) / 1000))) * 1000;
    const page_size: u32 = @intCast(std.math.clamp(integer(params, "page-size", 100), 1, 1000));

    var running_state: u8 = RUNNING;
    var filter = c.wasmonkey_chaos_cloud_instance_filter_t{
        .group_pattern = .{ .is_some = true, .val = borrow(groups) },
        .tags = .{ .ptr = null, .len = 0 },
        .zone = .{ .is_some = false },
        .states = .{ .ptr = &running_state, .len = 1 },
    };
    var cloud_err: CloudError = undefined;
    var total: u32 = 0;
    if (!c.wasmonkey_chaos_cloud_count_instances(&filter, &total, &cloud_err)) return failed(err, cloud_err);

    var running: std.ArrayList(Instance) = .empty;
    defer {
        for (running.items) |*instance| c.wasmonkey_chaos_cloud_instance_free(instance);
        running.deinit(gpa);
    }
    var after: c.strategy_plugin_option_string_t = .{ .is_some = false };
    while (true) {
        var page: c.wasmonkey_chaos_cloud_instance_page_t = undefined;
        const ok = c.wasmonkey_chaos_cloud_list_instances_page(&filter, if (after.is_some) &after.val else null, page_size, &page, &cloud_err);
        c.strategy_plugin_option_string_free(&after);
        if (!ok) return failed(err, cloud_err);
        // The page's instances move into `running`.
        running.appendSlice(gpa, items(Instance, page.instances.ptr, page.instances.len)) catch @panic("out of memory");
        std.c.free(page.instances.ptr);
        after = page.next;
        if (!after.is_some) break;
    }
    log(.info, "{d} running in {s} ({d} counted), read {d} at a time", .{ running.items.len, groups, total, page_size });
    std.mem.sort(Instance, running.items, {}, oldestFirst);

    var lines: std.ArrayList([]const u8) = .empty;
    defer {
        for (lines.items) |line| gpa.free(line);
        lines.deinit(gpa);
    }
    var stopped: usize = 0;
    for (running.items[0..@min(count, running.items.len)]) |*instance| {
        const id = bytes(instance.id);
        const reason_text = print("oldest first: launched at {d} ms, {s}", .{ instance.launched_at_ms, bytes(instance.instance_type) });
        defer gpa.free(reason_text);
        var reason = borrow(reason_text);
        var fault: c.wasmonkey_chaos_cloud_fault_t = undefined;
        var refused: CloudError = undefined;
        if (!c.wasmonkey_chaos_cloud_stop(&instance.id, stop_ms, &reason, &fault, &refused)) {
            defer c.wasmonkey_chaos_types_cloud_error_free(&refused);
            const kind = ERROR_KINDS[refused.tag];
            log(.warn, "{s}: stop refused ({s})", .{ id, kind });
            lines.append(gpa, print("refused {s}: {s}", .{ id, kind })) catch @panic("out of memory");
            continue;
        }
        defer c.wasmonkey_chaos_types_fault_free(&fault);
        stopped += 1;
        const market = if (instance.market == SPOT) "spot" else "on-demand";
        const until: u64 = if (fault.until_ms.is_some) fault.until_ms.val else 0;
        lines.append(gpa, print("stopped {s} ({s}, {s}) until {d} ms", .{ id, bytes(instance.instance_type), market, until })) catch @panic("out of memory");
    }
    if (stopped > 0) c.wasmonkey_chaos_runtime_sleep_ms(stop_ms);
    const joined = std.mem.join(gpa, "; ", lines.items) catch @panic("out of memory");
    defer gpa.free(joined);
    const summary = print("oldest-first: stopped {d} of {d} running: {s}", .{ stopped, running.items.len, joined });
    defer gpa.free(summary);
    ret.* = .{ .victims = .{ .ptr = null, .len = 0 }, .summary = own(summary) };
    return true;
}

/// A cloud error that ends the run becomes run-error.cloud (it moves).
fn failed(err: *RunError, cloud_err: CloudError) bool {
    err.tag = c.EXPORTS_WASMONKEY_CHAOS_STRATEGY_RUN_ERROR_CLOUD;
    err.val = .{ .cloud = cloud_err };
    return false;
}

fn spec(name: []const u8, description: []const u8, value: ParamValue) ParamSpec {
    return .{ .name = own(name), .description = own(description), .default_ = value };
}

export fn exports_wasmonkey_chaos_strategy_metadata(ret: *c.exports_wasmonkey_chaos_strategy_plugin_metadata_t) void {
    const count = 4;
    const raw = std.c.malloc(count * @sizeOf(ParamSpec)) orelse @panic("out of memory");
    const specs: [*]ParamSpec = @ptrCast(@alignCast(raw));
    specs[0] = spec("groups", "Auto Scaling group name pattern (`*` for any)", .{ .tag = TEXT, .val = .{ .text = own("*") } });
    specs[1] = spec("count", "how many of the oldest instances to stop", .{ .tag = INTEGER, .val = .{ .integer = 1 } });
    specs[2] = spec("stop-secs", "how long each stays stopped", .{ .tag = INTEGER, .val = .{ .integer = 60 } });
    specs[3] = spec("page-size", "instances read per page", .{ .tag = INTEGER, .val = .{ .integer = 100 } });
    ret.* = .{
        .name = own(NAME),
        .version = own(VERSION),
        .description = own(DESCRIPTION),
        .params = .{ .ptr = specs, .len = count },
    };
}

export fn exports_wasmonkey_chaos_strategy_run(params: *Params, ret: *Outcome, err: *RunError) bool {
    defer c.exports_wasmonkey_chaos_strategy_list_param_free(params);
    return experiment(params, ret, err);
}
