/// The scope map's rules, for tests and tools that document or check them.
public enum ScopeMapProbe {
    public static func normalize(_ path: String) -> String { ScopeMap.normalize(path) }
    public static func required(_ method: String, _ path: String) -> String? { ScopeMap.requiredScope(method: method, path: path) }
}
