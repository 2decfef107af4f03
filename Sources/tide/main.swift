import Tide
let rt = try Runtime.currentThread()
let v = try rt.run {
  async let a: Int = { try await Tide.sleep(for: .milliseconds(50)); return 1 }()
  let h = Tide.spawn { try await Tide.sleep(for: .milliseconds(20)); return 2 }
  let p = try Runtime.current!.spawn(ready(40))
  var s = 0
  for try await t in try Tide.interval(every: .milliseconds(10)) { s += 1; if s == 3 { _ = t; break } }
  return try await a + h.value + p.value + s
}
print(v, rt.metrics)
