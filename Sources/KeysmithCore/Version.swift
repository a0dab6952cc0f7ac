/// Keysmith's version, as `keysmith --version`, the start-up log line and `/metrics` report it.
public enum KeysmithVersion {
    public static let current = "0.4.0"
}
