// KeysmithCore's enumerations as command-line values. The conformances of public types are public, hence the
// public imports (in an executable, where nothing imports them).
public import ArgumentParser
public import KeysmithCore

extension OwnerProjectAccess: ExpressibleByArgument {}
extension ProjectRole: ExpressibleByArgument {}
extension OrganizationRole: ExpressibleByArgument {}
extension AuditEventType: ExpressibleByArgument {}
