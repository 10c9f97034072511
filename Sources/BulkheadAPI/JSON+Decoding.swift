/// `Decodable` types read from JSON text without Foundation: the VM spec file (`--config`) and
/// chaos scenarios. `JSON.parse` reads the text; a small `Decoder` over the parsed value drives the
/// types' synthesized `init(from:)`. It throws what `JSONDecoder` throws, with the coding path
/// (`keyNotFound`, `typeMismatch`, `valueNotFound`, `dataCorrupted`), so callers can name the field.
///
/// Differences from Foundation's `JSONDecoder`: numbers are `Double`s (an integer field takes an
/// exactly representable whole number, up to 2^53; 1.5 or 1e30 for an `Int` is a type mismatch);
/// a repeated key takes its first value; unknown keys are ignored, as there.
extension JSON {
    /// Decodes `type` from JSON `text`; throws `DecodingError` (text that is not JSON: `dataCorrupted`
    /// with an empty path and "at line L, column C").
    public static func decode<T: Decodable>(_ type: T.Type, from text: String) throws -> T {
        var parser = Parser(bytes: Array(text.utf8))
        let parsed = parser.value(depth: 0)
        parser.skipSpace()
        guard let value = parsed, parser.index == parser.bytes.count else {
            let (line, column) = position(of: min(parser.index, parser.bytes.count), in: parser.bytes)
            throw DecodingError.dataCorrupted(.init(
                codingPath: [], debugDescription: "at line \(line), column \(column)"))
        }
        return try T(from: ValueDecoder(value: value, codingPath: []))
    }

    /// 1-based line and column of byte `offset`.
    static func position(of offset: Int, in bytes: [UInt8]) -> (line: Int, column: Int) {
        var line = 1
        var column = 1
        for byte in bytes[..<offset] {
            if byte == 0x0a { line += 1; column = 1 } else { column += 1 }
        }
        return (line, column)
    }

    /// An array element's place in a coding path (`disks[0]`).
    struct IndexKey: CodingKey {
        let intValue: Int?
        var stringValue: String { "Index \(intValue ?? 0)" }
        init(_ index: Int) { intValue = index }
        init?(intValue: Int) { self.intValue = intValue }
        init?(stringValue: String) { nil }
    }

    /// A `Decoder` over one parsed value.
    struct ValueDecoder: Decoder {
        let value: JSON
        let codingPath: [any CodingKey]
        var userInfo: [CodingUserInfoKey: Any] { [:] }

        func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
            guard case .object(let members) = value else {
                throw Single(value: value, codingPath: codingPath).mismatch([String: Any].self)
            }
            return KeyedDecodingContainer(Keyed(members: members, codingPath: codingPath))
        }

        func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
            guard case .array(let items) = value else {
                throw Single(value: value, codingPath: codingPath).mismatch([Any].self)
            }
            return Unkeyed(items: items, codingPath: codingPath)
        }

        func singleValueContainer() throws -> any SingleValueDecodingContainer {
            Single(value: value, codingPath: codingPath)
        }
    }

    /// One value: the primitive conversions every container funnels into.
    struct Single: SingleValueDecodingContainer {
        let value: JSON
        let codingPath: [any CodingKey]

        func mismatch(_ type: Any.Type) -> DecodingError {
            if case .null = value {
                return .valueNotFound(type, .init(codingPath: codingPath, debugDescription: "Expected \(type) but found null."))
            }
            return .typeMismatch(type, .init(codingPath: codingPath, debugDescription: "Expected \(type) but found \(value.serialized)."))
        }

        func decodeNil() -> Bool { value == .null }
        func decode(_ type: Bool.Type) throws -> Bool {
            guard case .bool(let b) = value else { throw mismatch(type) }
            return b
        }
        func decode(_ type: String.Type) throws -> String {
            guard case .string(let s) = value else { throw mismatch(type) }
            return s
        }
        func decode(_ type: Double.Type) throws -> Double {
            guard case .number(let n) = value else { throw mismatch(type) }
            return n
        }
        func decode(_ type: Float.Type) throws -> Float { Float(try decode(Double.self)) }
        func integer<I: FixedWidthInteger>(_ type: I.Type) throws -> I {
            guard case .number(let n) = value, let i = I(exactly: n) else { throw mismatch(type) }
            return i
        }
        func decode(_ type: Int.Type) throws -> Int { try integer(type) }
        func decode(_ type: Int8.Type) throws -> Int8 { try integer(type) }
        func decode(_ type: Int16.Type) throws -> Int16 { try integer(type) }
        func decode(_ type: Int32.Type) throws -> Int32 { try integer(type) }
        func decode(_ type: Int64.Type) throws -> Int64 { try integer(type) }
        func decode(_ type: UInt.Type) throws -> UInt { try integer(type) }
        func decode(_ type: UInt8.Type) throws -> UInt8 { try integer(type) }
        func decode(_ type: UInt16.Type) throws -> UInt16 { try integer(type) }
        func decode(_ type: UInt32.Type) throws -> UInt32 { try integer(type) }
        func decode(_ type: UInt64.Type) throws -> UInt64 { try integer(type) }
        func decode<T: Decodable>(_ type: T.Type) throws -> T {
            try T(from: ValueDecoder(value: value, codingPath: codingPath))
        }
    }

    /// An object's members.
    struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let members: [(String, JSON)]
        let codingPath: [any CodingKey]

        var allKeys: [Key] { members.compactMap { Key(stringValue: $0.0) } }
        func contains(_ key: Key) -> Bool { members.contains { $0.0 == key.stringValue } }

        func single(_ key: Key) throws -> Single {
            guard let member = members.first(where: { $0.0 == key.stringValue }) else {
                throw DecodingError.keyNotFound(key, .init(
                    codingPath: codingPath, debugDescription: "No value for key \"\(key.stringValue)\"."))
            }
            return Single(value: member.1, codingPath: codingPath + [key])
        }

        func decodeNil(forKey key: Key) throws -> Bool { try single(key).decodeNil() }
        func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try single(key).decode(type) }
        func decode(_ type: String.Type, forKey key: Key) throws -> String { try single(key).decode(type) }
        func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try single(key).decode(type) }
        func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try single(key).decode(type) }
        func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try single(key).decode(type) }
        func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try single(key).decode(type) }
        func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try single(key).decode(type) }
        func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try single(key).decode(type) }
        func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try single(key).decode(type) }
        func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try single(key).decode(type) }
        func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try single(key).decode(type) }
        func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try single(key).decode(type) }
        func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try single(key).decode(type) }
        func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try single(key).decode(type) }
        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try single(key).decode(type) }

        func nestedContainer<NestedKey: CodingKey>(
            keyedBy type: NestedKey.Type, forKey key: Key
        ) throws -> KeyedDecodingContainer<NestedKey> {
            let inner = try single(key)
            return try ValueDecoder(value: inner.value, codingPath: inner.codingPath).container(keyedBy: type)
        }

        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
            let inner = try single(key)
            return try ValueDecoder(value: inner.value, codingPath: inner.codingPath).unkeyedContainer()
        }

        func superDecoder() throws -> any Decoder { ValueDecoder(value: .object(members), codingPath: codingPath) }

        func superDecoder(forKey key: Key) throws -> any Decoder {
            let inner = try single(key)
            return ValueDecoder(value: inner.value, codingPath: inner.codingPath)
        }
    }

    /// An array's elements, in order.
    struct Unkeyed: UnkeyedDecodingContainer {
        let items: [JSON]
        let codingPath: [any CodingKey]
        var currentIndex = 0

        init(items: [JSON], codingPath: [any CodingKey]) {
            self.items = items
            self.codingPath = codingPath
        }

        var count: Int? { items.count }
        var isAtEnd: Bool { currentIndex >= items.count }

        /// The next element, consumed.
        mutating func next(_ type: Any.Type) throws -> Single {
            guard !isAtEnd else {
                throw DecodingError.valueNotFound(type, .init(
                    codingPath: codingPath + [IndexKey(currentIndex)], debugDescription: "Unkeyed container is at end."))
            }
            defer { currentIndex += 1 }
            return Single(value: items[currentIndex], codingPath: codingPath + [IndexKey(currentIndex)])
        }

        mutating func decodeNil() throws -> Bool {
            guard !isAtEnd, items[currentIndex] == .null else { return false }
            currentIndex += 1
            return true
        }

        mutating func decode(_ type: Bool.Type) throws -> Bool { try next(type).decode(type) }
        mutating func decode(_ type: String.Type) throws -> String { try next(type).decode(type) }
        mutating func decode(_ type: Double.Type) throws -> Double { try next(type).decode(type) }
        mutating func decode(_ type: Float.Type) throws -> Float { try next(type).decode(type) }
        mutating func decode(_ type: Int.Type) throws -> Int { try next(type).decode(type) }
        mutating func decode(_ type: Int8.Type) throws -> Int8 { try next(type).decode(type) }
        mutating func decode(_ type: Int16.Type) throws -> Int16 { try next(type).decode(type) }
        mutating func decode(_ type: Int32.Type) throws -> Int32 { try next(type).decode(type) }
        mutating func decode(_ type: Int64.Type) throws -> Int64 { try next(type).decode(type) }
        mutating func decode(_ type: UInt.Type) throws -> UInt { try next(type).decode(type) }
        mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try next(type).decode(type) }
        mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try next(type).decode(type) }
        mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try next(type).decode(type) }
        mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try next(type).decode(type) }
        mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try next(type).decode(type) }

        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
            let inner = try next([String: Any].self)
            return try ValueDecoder(value: inner.value, codingPath: inner.codingPath).container(keyedBy: type)
        }

        mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
            let inner = try next([Any].self)
            return try ValueDecoder(value: inner.value, codingPath: inner.codingPath).unkeyedContainer()
        }

        mutating func superDecoder() throws -> any Decoder {
            let inner = try next(Any.self)
            return ValueDecoder(value: inner.value, codingPath: inner.codingPath)
        }
    }
}
