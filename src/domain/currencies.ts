/**
 * Active ISO 4217 alphabetic codes (funds and precious metals included, `XXX` and `XTS` left out).
 * Kept in the bundle rather than read from `Intl`, whose list carries withdrawn currencies and
 * varies with the runtime's ICU data.
 */
const CODES =
  "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN " +
  "BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN " +
  "ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD " +
  "JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT " +
  "MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG " +
  "QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT " +
  "TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA " +
  "XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XUA YER ZAR ZMW ZWG";

export const ISO_4217_CODES: ReadonlySet<string> = new Set(CODES.split(" "));

/**
 * ISO 4217 minor units where they are not 2 (the exponent: JPY has 0, KWD 3). `null` for codes
 * whose minor unit is "N.A." (funds of precious metals, SDRs, testing units): amounts in them are
 * not rounded to a minor unit, only to the 8 fraction digits every amount in the hub may carry.
 */
// biome-ignore format: a table reads better as one
const MINOR_UNIT_EXCEPTIONS: Readonly<Record<string, number | null>> = {
  BIF: 0, CLP: 0, DJF: 0, GNF: 0, ISK: 0, JPY: 0, KMF: 0, KRW: 0, PYG: 0, RWF: 0, UGX: 0, UYI: 0,
  VND: 0, VUV: 0, XAF: 0, XOF: 0, XPF: 0,
  BHD: 3, IQD: 3, JOD: 3, KWD: 3, LYD: 3, OMR: 3, TND: 3,
  CLF: 4, UYW: 4,
  XAG: null, XAU: null, XBA: null, XBB: null, XBC: null, XBD: null, XDR: null, XPD: null, XPT: null,
  XSU: null, XUA: null,
};

/** The most fraction digits an amount carries anywhere in the hub (the postback schema's limit). */
export const MAX_FRACTION_DIGITS = 8;

/** How many fraction digits an amount in `currency` is rounded to. */
export function minorUnits(currency: string): number {
  const exception = MINOR_UNIT_EXCEPTIONS[currency];
  if (exception === undefined) return 2;
  return exception ?? MAX_FRACTION_DIGITS;
}
