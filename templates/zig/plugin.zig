//! {{name}}: a wasmonkey chaos strategy. Terminates one random running,
//! in-service, healthy instance in the groups matching `groups`.
//!
//! `bindings` is wit-bindgen's C binding of wit/, translated to Zig at each
//! build (build/gen/). What an import returns is ours to free; what `run` and
//! `metadata` return must come from `malloc` (the bindings `free` it after
//! the call); `run`'s arguments are ours.

const std = @import("std");
const c = @import("bindings");

/// A panic traps: the default handler would print through WASI.
pub const panic = std.debug.no_panic;

const String = c.strategy_plugin_string_t;

fn bytes(s: String) []const u8 {
    if (s.len == 0) return "";
    return s.ptr[0..s.len];
}

/// A `malloc`ed WIT string, for what the bindings will `free`.
fn own(comptime fmt: []const u8, args: anytype) String {
    const text = std.fmt.allocPrint(std.heap.c_allocator, fmt, args) catch @panic("out of memory");
    defer std.heap.c_allocator.free(text);
    const raw = std.c.malloc(@max(text.len, 1)) orelse @panic("out of memory");
    const out: [*]u8 = @ptrCast(raw);
    @memcpy(out[0..text.len], text);
    return .{ .ptr = out, .len = text.len };
}

fn log(level: u8, comptime fmt: []const u8, args: anytype) void {
    var message = own(fmt, args);
    defer c.strategy_plugin_string_free(&message);
    c.wasmonkey_chaos_runtime_log(level, &message);
}

export fn exports_wasmonkey_chaos_strategy_metadata(ret: *c.exports_wasmonkey_chaos_strategy_plugin_metadata_t) void {
    const raw = std.c.malloc(@sizeOf(c.exports_wasmonkey_chaos_strategy_param_spec_t)) orelse @panic("out of memory");
    const groups: *c.exports_wasmonkey_chaos_strategy_param_spec_t = @ptrCast(@alignCast(raw));
    groups.* = .{
        .name = own("groups", .{}),
        .description = own("Glob over the names of the Auto Scaling groups to act on", .{}),
        .default_ = .{ .tag = c.EXPORTS_WASMONKEY_CHAOS_STRATEGY_PARAM_VALUE_TEXT, .val = .{ .text = own("*", .{}) } },
    };
    ret.* = .{
        .name = own("{{name}}", .{}),
        .version = own("0.1.0", .{}),
        .description = own("{{description}}", .{}),
        .params = .{ .ptr = groups, .len = 1 },
    };
}

export fn exports_wasmonkey_chaos_strategy_run(
    params: *c.exports_wasmonkey_chaos_strategy_list_param_t,
    ret: *c.exports_wasmonkey_chaos_strategy_outcome_t,
    err: *c.exports_wasmonkey_chaos_strategy_run_error_t,
) bool {
    defer c.exports_wasmonkey_chaos_strategy_list_param_free(params);
    // The host hands over every declared parameter, of its declared kind.
    var glob: String = .{ .ptr = null, .len = 0 };
    for (0..params.len) |i| {
        const p = params.ptr[i];
        if (std.mem.eql(u8, bytes(p.name), "groups") and p.value.tag == c.EXPORTS_WASMONKEY_CHAOS_STRATEGY_PARAM_VALUE_TEXT) {
            glob = p.value.val.text;
        }
    }
    var running: u8 = c.WASMONKEY_CHAOS_TYPES_INSTANCE_STATE_RUNNING;
    var filter = c.wasmonkey_chaos_cloud_instance_filter_t{
        .group_pattern = .{ .is_some = true, .val = glob },
        .tags = .{ .ptr = null, .len = 0 },
        .zone = .{ .is_some = false },
        .states = .{ .ptr = &running, .len = 1 },
    };
    // Only instances inside the operator's scope are ever listed.
    var instances: c.wasmonkey_chaos_cloud_list_instance_t = undefined;
    var cloud_err: c.wasmonkey_chaos_types_cloud_error_t = undefined;
    if (!c.wasmonkey_chaos_cloud_list_instances(&filter, &instances, &cloud_err)) {
        err.tag = c.EXPORTS_WASMONKEY_CHAOS_STRATEGY_RUN_ERROR_CLOUD;
        err.val.cloud = cloud_err;
        return false;
    }
    defer c.wasmonkey_chaos_cloud_list_instance_free(&instances);
    var healthy: [*c]c.wasmonkey_chaos_types_instance_t = null;
    var count: u64 = 0;
    // Count first, then draw once: the same --seed picks the same victim.
    for (0..instances.len) |i| {
        const instance = instances.ptr[i];
        if (instance.lifecycle.is_some and instance.lifecycle.val == c.WASMONKEY_CHAOS_TYPES_LIFECYCLE_STATE_IN_SERVICE and instance.healthy) count += 1;
    }
    ret.* = .{ .victims = .{ .ptr = null, .len = 0 }, .summary = undefined };
    if (count == 0) {
        ret.summary = own("No healthy instance in groups matching \"{s}\".", .{bytes(glob)});
        return true;
    }
    var pick = c.wasmonkey_chaos_runtime_random_u64() % count;
    for (0..instances.len) |i| {
        const instance = &instances.ptr[i];
        if (!(instance.lifecycle.is_some and instance.lifecycle.val == c.WASMONKEY_CHAOS_TYPES_LIFECYCLE_STATE_IN_SERVICE and instance.healthy)) continue;
        if (pick == 0) {
            healthy = instance;
            break;
        }
        pick -= 1;
    }
    var id = healthy.*.id;
    var reason = own("{{name}}: random victim", .{});
    defer c.strategy_plugin_string_free(&reason);
    var done: c.wasmonkey_chaos_cloud_termination_t = undefined;
    if (!c.wasmonkey_chaos_cloud_terminate(&id, &reason, &done, &cloud_err)) {
        // A refusal (scope, blast radius, grants) is a typed error, not a crash;
        // every case carries its message in the same place.
        defer c.wasmonkey_chaos_types_cloud_error_free(&cloud_err);
        log(c.WASMONKEY_CHAOS_RUNTIME_LOG_LEVEL_WARN, "not terminating {s}: {s}", .{ bytes(id), bytes(cloud_err.val.denied) });
        ret.summary = own("Did not terminate {s}: {s}.", .{ bytes(id), bytes(cloud_err.val.denied) });
        return true;
    }
    log(c.WASMONKEY_CHAOS_RUNTIME_LOG_LEVEL_INFO, "terminated {s}", .{bytes(done.instance_id)});
    ret.summary = own("{s} {s}.", .{ if (done.dry_run) "Would have terminated" else "Terminated", bytes(done.instance_id) });
    const raw = std.c.malloc(@sizeOf(c.exports_wasmonkey_chaos_strategy_victim_t)) orelse @panic("out of memory");
    const victim: *c.exports_wasmonkey_chaos_strategy_victim_t = @ptrCast(@alignCast(raw));
    // The termination's strings move into the victim.
    victim.* = .{
        .instance_id = done.instance_id,
        .group = done.group,
        .zone = done.zone,
        .terminated_at_ms = done.at_ms,
        .dry_run = done.dry_run,
        // The host measures recovery itself; this plugin does not wait.
        .verdict = c.EXPORTS_WASMONKEY_CHAOS_STRATEGY_VERDICT_UNCHECKED,
        .recovered_at_ms = .{ .is_some = false },
    };
    ret.victims = .{ .ptr = victim, .len = 1 };
    return true;
}
